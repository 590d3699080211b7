use crate::{excerpt, is_digits, ParseError, GPU_QUERY};

/// One GPU as reported by [`GPU_QUERY`](crate::GPU_QUERY).
///
/// Fields nvidia-smi may legitimately leave out on some boards (it prints
/// placeholders such as `[N/A]` or `[Not Supported]`) are `Option`s; the
/// fields an instance type is built from are required.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// nvidia-smi's index, the number `CUDA_VISIBLE_DEVICES` and
    /// `--gpus device=` refer to.
    pub index: u32,
    /// The product name as nvidia-smi prints it, e.g. `NVIDIA H100 80GB HBM3`;
    /// see [`normalize_gpu_type`] for the catalogue name.
    pub name: String,
    /// Stable identity that survives reboots and re-enumeration.
    pub uuid: String,
    /// Total framebuffer memory in MiB (nvidia-smi's `memory.total`).
    pub memory_total_mib: u64,
    /// Memory in use when the query ran, in MiB; a GPU that is already busy
    /// on a host offered as free is worth noticing.
    pub memory_used_mib: Option<u64>,
    /// Driver version, the same for every GPU of a host.
    pub driver_version: String,
    /// PCI address, e.g. `00000000:00:06.0`.
    pub pci_bus_id: String,
    /// CUDA compute capability, e.g. `9.0`, kept as text because it is a
    /// version rather than a number.
    pub compute_cap: String,
    /// Board power limit in watts.
    pub power_limit_watts: Option<f64>,
}

const FIELDS: usize = 9;

/// Parses the CSV printed by [`GPU_QUERY`](crate::GPU_QUERY), one GPU per
/// line, in the order nvidia-smi printed them.
///
/// Empty (or blank) output means the host has no GPUs. Deciding that an
/// error printed instead of CSV (nvidia-smi missing, "No devices were found",
/// a driver mismatch) also means "no GPUs" is left to the caller, who can see
/// the exit status; given such text this function returns an error.
pub fn parse_gpu_query(csv: &str) -> Result<Vec<Gpu>, ParseError> {
    let mut gpus: Vec<Gpu> = Vec::new();
    for (number, raw) in csv.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let gpu = parse_line(line).map_err(|why| {
            ParseError::new(
                GPU_QUERY,
                format!("line {}: {why}: {}", number + 1, excerpt(line)),
            )
        })?;
        // Repeated indexes mean output was duplicated or spliced, and
        // counting it would double the GPUs Parasol offers.
        if gpus.iter().any(|seen| seen.index == gpu.index) {
            return Err(ParseError::new(
                GPU_QUERY,
                format!("line {}: GPU index {} appears twice", number + 1, gpu.index),
            ));
        }
        gpus.push(gpu);
    }
    Ok(gpus)
}

fn parse_line(line: &str) -> Result<Gpu, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    // Exactly nine: a row with more or fewer columns came from a different
    // query, and guessing which column is which would misreport memory.
    let [index, name, uuid, total, used, driver, bus_id, compute_cap, power] = fields[..] else {
        return Err(format!(
            "expected {FIELDS} comma-separated fields, found {}",
            fields.len()
        ));
    };
    if !is_digits(index) {
        return Err(format!("index {index:?} is not a number"));
    }
    let index = index
        .parse()
        .map_err(|_| format!("index {index:?} is out of range"))?;
    if name.is_empty() {
        return Err("the GPU name is empty".to_owned());
    }
    if !is_digits(total) {
        return Err(format!("memory.total {total:?} is not a number of MiB"));
    }
    let memory_total_mib = total
        .parse()
        .map_err(|_| format!("memory.total {total:?} is out of range"))?;
    let memory_used_mib = optional(used, "memory.used", |v| {
        is_digits(v).then(|| v.parse().ok()).flatten()
    })?;
    let power_limit_watts = optional(power, "power.limit", |v| {
        v.parse::<f64>().ok().filter(|w| w.is_finite() && *w >= 0.0)
    })?;
    Ok(Gpu {
        index,
        name: name.to_owned(),
        uuid: uuid.to_owned(),
        memory_total_mib,
        memory_used_mib,
        driver_version: driver.to_owned(),
        pci_bus_id: bus_id.to_owned(),
        compute_cap: compute_cap.to_owned(),
        power_limit_watts,
    })
}

/// Reads a field nvidia-smi may replace with a bracketed placeholder. Only
/// placeholders become `None`: any other non-number signals a column
/// mismatch and is an error.
fn optional<T>(
    value: &str,
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    if value.starts_with('[') && value.ends_with(']') {
        return Ok(None);
    }
    parse(value)
        .map(Some)
        .ok_or_else(|| format!("{field} {value:?} is not a number"))
}

/// Words nvidia-smi puts before the model that say nothing about which
/// instance type a GPU belongs to.
const BRAND_WORDS: [&str; 4] = ["NVIDIA", "TESLA", "GEFORCE", "QUADRO"];

/// Maps an nvidia-smi product name to the `gpu_type` a Shadeform-style
/// catalogue uses, so a host's GPUs are listed and filtered under the same
/// name as the same GPU rented elsewhere.
///
/// The rule, applied to the name split into uppercase alphanumeric words
/// (every other character separates words) with leading brand words
/// (`NVIDIA`, `Tesla`, `GeForce`, `Quadro`) dropped:
///
/// * `A100` is `A100_80G` when a word is `80GB`, else `A100`: the two memory
///   sizes are priced as separate types.
/// * A word that looks like a data-centre model code (one or two letters,
///   one to four digits, at most one trailing letter: `H100`, `GH200`,
///   `L40S`, `A10G`, `V100`, `T4`) is the type on its own; form factor and
///   memory words after it (`SXM4`, `PCIe`, `80GB`, `HBM3`, `NVL`) are
///   dropped, since Shadeform reports those through `interconnect` and
///   `vram_per_gpu_in_gb` instead.
/// * `RTX A6000` and kin become the A-series code (`A6000`); `RTX 6000 Ada
///   Generation` becomes `RTX6000Ada`; other `RTX <digits>` cards become
///   `RTX<digits>` followed by any `TI`/`SUPER` word (`RTX4090`,
///   `RTX4070TI`).
/// * Anything else falls back to the remaining words joined with `_`
///   (`NVIDIA RTX PRO 6000 Blackwell` gives `RTX_PRO_6000_BLACKWELL`), or
///   all words if only brand words were present, or `UNKNOWN` for a name
///   with no letters or digits at all. The fallback keeps distinct products
///   distinct rather than guessing a catalogue name.
///
/// ```
/// use parasol_hostinfo::normalize_gpu_type;
/// assert_eq!(normalize_gpu_type("NVIDIA H100 80GB HBM3"), "H100");
/// assert_eq!(normalize_gpu_type("NVIDIA A100-SXM4-80GB"), "A100_80G");
/// assert_eq!(normalize_gpu_type("NVIDIA GeForce RTX 4090"), "RTX4090");
/// ```
pub fn normalize_gpu_type(nvidia_name: &str) -> String {
    let upper = nvidia_name.to_ascii_uppercase();
    let all: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let brand_words = all.iter().take_while(|w| BRAND_WORDS.contains(w)).count();
    let words = &all[brand_words..];

    match words {
        [] if all.is_empty() => "UNKNOWN".to_owned(),
        [] => all.join("_"),
        ["A100", rest @ ..] => {
            if rest.contains(&"80GB") {
                "A100_80G".to_owned()
            } else {
                "A100".to_owned()
            }
        }
        ["RTX", series, ..] if is_model_code(series) && series.starts_with('A') => {
            (*series).to_owned()
        }
        ["RTX", number, "ADA", ..] if is_digits(number) => format!("RTX{number}Ada"),
        ["RTX", number, rest @ ..] if is_digits(number) => {
            let suffix: String = rest
                .iter()
                .take_while(|w| matches!(**w, "TI" | "SUPER"))
                .copied()
                .collect();
            format!("RTX{number}{suffix}")
        }
        [model, ..] if is_model_code(model) => (*model).to_owned(),
        _ => words.join("_"),
    }
}

/// Recognises NVIDIA's compact model codes (`H100`, `GH200`, `L40S`, `T4`),
/// which name a product on their own.
fn is_model_code(word: &str) -> bool {
    let bytes = word.as_bytes();
    let letters = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    let digits = bytes[letters..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let suffix = bytes.len() - letters - digits;
    (1..=2).contains(&letters)
        && (1..=4).contains(&digits)
        && suffix <= 1
        && bytes[letters + digits..].iter().all(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200_ROW: &str = "0, NVIDIA H200, GPU-b2908912-5b90-2eb5-b54b-e3985c245af4, 143771, 0, 580.159.04, 00000000:00:06.0, 9.0, 700.00";

    #[test]
    fn every_documented_product_name_maps_to_its_catalogue_type() {
        let cases = [
            ("NVIDIA H200", "H200"),
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA H100 PCIe", "H100"),
            ("NVIDIA H100 NVL", "H100"),
            ("NVIDIA A100-SXM4-80GB", "A100_80G"),
            ("NVIDIA A100 80GB PCIe", "A100_80G"),
            ("NVIDIA A100-SXM4-40GB", "A100"),
            ("NVIDIA A100-PCIE-40GB", "A100"),
            ("A100-PCIE-40GB", "A100"),
            ("NVIDIA B200", "B200"),
            ("NVIDIA L40S", "L40S"),
            ("NVIDIA L40", "L40"),
            ("NVIDIA L4", "L4"),
            ("NVIDIA RTX A6000", "A6000"),
            ("NVIDIA RTX A5000", "A5000"),
            ("NVIDIA RTX A4000", "A4000"),
            ("NVIDIA GeForce RTX 4090", "RTX4090"),
            ("NVIDIA GeForce RTX 3090 Ti", "RTX3090TI"),
            ("NVIDIA GeForce RTX 4080 SUPER", "RTX4080SUPER"),
            ("NVIDIA A10", "A10"),
            ("NVIDIA A10G", "A10G"),
            ("Tesla V100-SXM2-16GB", "V100"),
            ("Tesla T4", "T4"),
            ("NVIDIA GH200 480GB", "GH200"),
            ("NVIDIA RTX 6000 Ada Generation", "RTX6000Ada"),
            ("Quadro RTX 8000", "RTX8000"),
        ];
        for (name, expected) in cases {
            assert_eq!(normalize_gpu_type(name), expected, "for {name:?}");
        }
    }

    #[test]
    fn unknown_names_fall_back_to_uppercase_words_joined_by_underscores() {
        assert_eq!(
            normalize_gpu_type("NVIDIA RTX PRO 6000 Blackwell Server Edition"),
            "RTX_PRO_6000_BLACKWELL_SERVER_EDITION"
        );
        assert_eq!(normalize_gpu_type("NVIDIA TITAN RTX"), "TITAN_RTX");
        assert_eq!(
            normalize_gpu_type("  nvidia   geforce gtx 1080 ti "),
            "GTX_1080_TI"
        );
        assert_eq!(normalize_gpu_type("NVIDIA"), "NVIDIA");
        assert_eq!(normalize_gpu_type(""), "UNKNOWN");
        assert_eq!(normalize_gpu_type("--- ✓ ---"), "UNKNOWN");
    }

    #[test]
    fn normalization_is_case_and_separator_insensitive() {
        assert_eq!(normalize_gpu_type("nvidia a100_sxm4_80gb"), "A100_80G");
        assert_eq!(normalize_gpu_type("NVIDIA\tH200\r"), "H200");
    }

    #[test]
    fn a_full_row_parses_into_every_field() {
        let gpus = parse_gpu_query(H200_ROW).unwrap();
        assert_eq!(
            gpus,
            [Gpu {
                index: 0,
                name: "NVIDIA H200".into(),
                uuid: "GPU-b2908912-5b90-2eb5-b54b-e3985c245af4".into(),
                memory_total_mib: 143771,
                memory_used_mib: Some(0),
                driver_version: "580.159.04".into(),
                pci_bus_id: "00000000:00:06.0".into(),
                compute_cap: "9.0".into(),
                power_limit_watts: Some(700.0),
            }]
        );
    }

    #[test]
    fn empty_or_blank_output_means_no_gpus() {
        assert_eq!(parse_gpu_query("").unwrap(), []);
        assert_eq!(parse_gpu_query("\n  \r\n").unwrap(), []);
    }

    #[test]
    fn placeholders_in_optional_fields_become_none() {
        let row = "3, NVIDIA GeForce RTX 4090, GPU-1, 24564, [N/A], 550.54, 00000000:81:00.0, 8.9, [Not Supported]";
        let gpu = &parse_gpu_query(row).unwrap()[0];
        assert_eq!(gpu.index, 3);
        assert_eq!(gpu.memory_used_mib, None);
        assert_eq!(gpu.power_limit_watts, None);
    }

    #[test]
    fn several_rows_with_windows_line_endings_keep_their_order() {
        let csv = "0, NVIDIA A10, GPU-a, 23028, 0, 550.54, 00000000:01:00.0, 8.6, 150.00\r\n\
                   1, NVIDIA A10, GPU-b, 23028, 5, 550.54, 00000000:02:00.0, 8.6, 150.00\r\n";
        let gpus = parse_gpu_query(csv).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].uuid, "GPU-b");
        assert_eq!(gpus[1].memory_used_mib, Some(5));
    }

    #[test]
    fn a_truncated_row_is_an_error_naming_the_gpu_query() {
        let err = parse_gpu_query("0, NVIDIA H200, GPU-b2908912, 1437").unwrap_err();
        assert_eq!(err.command(), GPU_QUERY);
        assert!(err.reason().contains("expected 9"), "{err}");
        assert!(err.reason().contains("line 1"), "{err}");
    }

    #[test]
    fn non_numeric_memory_is_an_error() {
        let row = H200_ROW.replace("143771", "[N/A]");
        let err = parse_gpu_query(&row).unwrap_err();
        assert!(err.reason().contains("memory.total"), "{err}");
        let row = H200_ROW.replace("143771", "-5");
        assert!(parse_gpu_query(&row).is_err());
        let row = H200_ROW.replace("143771", "99999999999999999999999");
        assert!(parse_gpu_query(&row).is_err());
    }

    #[test]
    fn garbage_in_optional_numeric_fields_is_an_error() {
        let row = H200_ROW.replace(", 700.00", ", lots");
        assert!(parse_gpu_query(&row)
            .unwrap_err()
            .reason()
            .contains("power.limit"));
        let row = H200_ROW.replace(", 700.00", ", NaN");
        assert!(parse_gpu_query(&row).is_err());
    }

    #[test]
    fn error_text_instead_of_csv_is_an_error() {
        for text in [
            "No devices were found",
            "bash: nvidia-smi: command not found",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "index, name, uuid, memory.total [MiB], memory.used [MiB], driver_version, pci.bus_id, compute_cap, power.limit [W]",
        ] {
            assert!(parse_gpu_query(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_repeated_gpu_index_is_an_error() {
        let csv = format!("{H200_ROW}\n{H200_ROW}\n");
        let err = parse_gpu_query(&csv).unwrap_err();
        assert!(err.reason().contains("twice"), "{err}");
    }

    #[test]
    fn an_empty_name_is_an_error() {
        let row = H200_ROW.replace("NVIDIA H200", "");
        assert!(parse_gpu_query(&row).is_err());
    }
}
