use crate::{excerpt, is_digits, ParseError, DF, FREE, LSCPU};

/// The host's CPUs as `lscpu` describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Logical CPUs (hardware threads), what clouds sell as vCPUs.
    pub vcpus: u32,
    /// Marketing name, e.g. `Intel(R) Xeon(R) Processor`; empty when lscpu
    /// prints none (some ARM and virtual CPUs).
    pub model_name: String,
    /// e.g. `x86_64` or `aarch64`; empty when absent.
    pub architecture: String,
    /// e.g. `GenuineIntel`; empty when absent.
    pub vendor_id: String,
    /// Physical sockets, when lscpu knows them.
    pub sockets: Option<u32>,
    /// Cores per socket, when lscpu knows them.
    pub cores_per_socket: Option<u32>,
    /// Hardware threads per core (2 with SMT), when lscpu knows them.
    pub threads_per_core: Option<u32>,
}

/// Reads [`LSCPU`](crate::LSCPU) output; the vCPU count comes from the
/// `CPU(s):` line, which is required.
///
/// Labels are matched after trimming, so both the flat layout and the
/// indented one newer util-linux prints are accepted. Counts that are
/// present but not numbers make the output malformed rather than being
/// skipped, since they suggest the text is not lscpu's.
pub fn parse_lscpu(text: &str) -> Result<Cpu, ParseError> {
    let field = |label: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == label).then(|| value.trim())
        })
    };
    let count = |label: &str| -> Result<Option<u32>, ParseError> {
        field(label)
            .map(|value| {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|_| is_digits(value))
                    .ok_or_else(|| {
                        ParseError::new(
                            LSCPU,
                            format!("`{label}:` is {} rather than a count", excerpt(value)),
                        )
                    })
            })
            .transpose()
    };

    let vcpus =
        count("CPU(s)")?.ok_or_else(|| ParseError::new(LSCPU, "there is no `CPU(s):` line"))?;
    if vcpus == 0 {
        return Err(ParseError::new(LSCPU, "`CPU(s):` is 0"));
    }
    Ok(Cpu {
        vcpus,
        model_name: field("Model name").unwrap_or_default().to_owned(),
        architecture: field("Architecture").unwrap_or_default().to_owned(),
        vendor_id: field("Vendor ID").unwrap_or_default().to_owned(),
        sockets: count("Socket(s)")?,
        cores_per_socket: count("Core(s) per socket")?,
        threads_per_core: count("Thread(s) per core")?,
    })
}

/// Reads total memory in bytes from [`FREE`](crate::FREE): the `total`
/// column of the `Mem:` row.
///
/// When no row is labelled `Mem:` (free translates the label in some
/// locales) the first labelled row is used, because free always prints
/// physical memory before swap.
pub fn parse_free_bytes(text: &str) -> Result<u64, ParseError> {
    let rows = || {
        text.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
    };
    let row = rows()
        .find(|cells| cells.first() == Some(&"Mem:"))
        .or_else(|| rows().find(|cells| cells.first().is_some_and(|c| c.ends_with(':'))))
        .ok_or_else(|| ParseError::new(FREE, "there is no `Mem:` row"))?;
    let total = row.get(1).copied().unwrap_or_default();
    parse_bytes(total).ok_or_else(|| {
        ParseError::new(
            FREE,
            format!(
                "the total column of the memory row is {} rather than a byte count",
                excerpt(total)
            ),
        )
    })
}

/// Reads the root filesystem's total size in bytes from [`DF`](crate::DF):
/// the `1B-blocks` column of the first row after the header.
///
/// df moves the numbers onto their own line when the filesystem name is too
/// long for its column, so the row is read as the words after the header
/// regardless of line breaks, and the size is the first of three
/// consecutive numbers (size, used, available); that also copes with a
/// filesystem name containing spaces.
pub fn parse_df_bytes(text: &str) -> Result<u64, ParseError> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    if lines.next().is_none() {
        return Err(ParseError::new(DF, "the output is empty"));
    }
    let words: Vec<&str> = lines.flat_map(str::split_whitespace).collect();
    // Index 0 is always the filesystem name, even an all-digit one.
    let size = (1..words.len())
        .find(|&at| {
            words
                .get(at..at + 3)
                .is_some_and(|cells| cells.iter().all(|cell| is_digits(cell)))
        })
        .map(|at| words[at])
        .ok_or_else(|| {
            ParseError::new(
                DF,
                format!(
                    "no filesystem row with size, used and available byte counts follows the header: {}",
                    excerpt(&words.join(" "))
                ),
            )
        })?;
    parse_bytes(size)
        .ok_or_else(|| ParseError::new(DF, format!("the size {} is out of range", excerpt(size))))
}

fn parse_bytes(text: &str) -> Option<u64> {
    if is_digits(text) {
        text.parse().ok()
    } else {
        None
    }
}

/// The identity of the host's operating system, from os-release(5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// Lowercase distribution identifier, e.g. `ubuntu`; `linux` when the
    /// file has no `ID`, as os-release(5) specifies.
    pub id: String,
    /// e.g. `24.04`; empty for rolling releases, which have none.
    pub version_id: String,
    /// Human-readable name, e.g. `Ubuntu 24.04.3 LTS`; `Linux` when absent,
    /// as os-release(5) specifies.
    pub pretty_name: String,
}

/// Reads [`OS_RELEASE`](crate::OS_RELEASE) output.
///
/// Never fails, because os-release(5) makes every key optional and supplies
/// defaults; [`build_spec`](crate::build_spec) separately rejects text with
/// no assignments at all, which means the file could not be read. Values may
/// be double-quoted (with backslash escapes) or single-quoted; the last
/// assignment to a key wins, as it would when a shell sources the file.
pub fn parse_os_release(text: &str) -> OsRelease {
    let pairs = os_release_pairs(text);
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value.clone())
    };
    OsRelease {
        id: get("ID").unwrap_or_else(|| "linux".to_owned()),
        version_id: get("VERSION_ID").unwrap_or_default(),
        pretty_name: get("PRETTY_NAME").unwrap_or_else(|| "Linux".to_owned()),
    }
}

/// Every `KEY=value` assignment in os-release text, values unquoted.
pub(crate) fn os_release_pairs(text: &str) -> Vec<(&str, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key_is_valid = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            key_is_valid.then(|| (key, unquote(value.trim())))
        })
        .collect()
}

/// Undoes shell-style quoting, the only syntax os-release(5) allows. An
/// unterminated quote keeps the rest of the line instead of failing, since
/// the value is still more useful than nothing.
fn unquote(value: &str) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some('"') => {
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => out.extend(chars.next()),
                    _ => out.push(c),
                }
            }
            out
        }
        Some('\'') => chars.take_while(|&c| c != '\'').collect(),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lscpu_counts_come_from_the_cpu_s_line_not_the_numa_or_online_lines() {
        let text = "Architecture:        aarch64\n\
                    CPU(s):              72\n\
                    On-line CPU(s) list: 0-71\n\
                    Vendor ID:           ARM\n  \
                    Model name:          Neoverse-V2\n    \
                    Thread(s) per core:  1\n\
                    NUMA node0 CPU(s):   0-71\n";
        let cpu = parse_lscpu(text).unwrap();
        assert_eq!(
            cpu,
            Cpu {
                vcpus: 72,
                model_name: "Neoverse-V2".into(),
                architecture: "aarch64".into(),
                vendor_id: "ARM".into(),
                sockets: None,
                cores_per_socket: None,
                threads_per_core: Some(1),
            }
        );
    }

    #[test]
    fn lscpu_without_a_cpu_count_is_an_error_naming_lscpu() {
        for text in [
            "",
            "garbage",
            "On-line CPU(s) list: 0-3",
            "CPU(s): many",
            "CPU(s): 0",
            "CPU(s): -4",
        ] {
            let err = parse_lscpu(text).unwrap_err();
            assert_eq!(err.command(), LSCPU, "{text:?}");
        }
    }

    #[test]
    fn free_total_is_the_second_cell_of_the_mem_row() {
        let text = "               total        used        free      shared  buff/cache   available\n\
                    Mem:     135148564480   531636224 133847900160     7544832   994209792 134616928256\n\
                    Swap:              0           0           0\n";
        assert_eq!(parse_free_bytes(text).unwrap(), 135_148_564_480);
    }

    #[test]
    fn free_with_a_translated_label_uses_the_first_row() {
        let text = "              gesamt       benutzt     frei\n\
                    Speicher:  1073741824  1  2\n\
                    Auslager:           0  0  0\n";
        assert_eq!(parse_free_bytes(text).unwrap(), 1 << 30);
    }

    #[test]
    fn free_output_without_numbers_is_an_error_naming_free() {
        for text in [
            "",
            "bash: free: command not found",
            "Mem:",
            "Mem: 12.5Gi 1Gi",
            "Mem: 99999999999999999999999",
        ] {
            let err = parse_free_bytes(text).unwrap_err();
            assert_eq!(err.command(), FREE, "{text:?}");
        }
    }

    #[test]
    fn df_size_is_the_block_column_of_the_row_after_the_header() {
        let text = "Filesystem        1B-blocks        Used   Available Use% Mounted on\n\
                    /dev/vda       270553174016 17286623232 68702314496  21% /\n";
        assert_eq!(parse_df_bytes(text).unwrap(), 270_553_174_016);
    }

    #[test]
    fn df_with_a_long_filesystem_name_wrapped_onto_its_own_line_still_parses() {
        let text = "Filesystem                                       1B-blocks        Used   Available Use% Mounted on\n\
                    /dev/mapper/ubuntu--vg-ubuntu--lv--with--a--long--name\n\
                    \x20                                   1967317618688 17286623232 1850000000000   1% /\n";
        assert_eq!(parse_df_bytes(text).unwrap(), 1_967_317_618_688);
    }

    #[test]
    fn df_with_a_numeric_or_spaced_filesystem_name_skips_the_name() {
        let text = "Filesystem 1B-blocks Used Available Use% Mounted on\n\
                    12345 1000 10 990 1% /\n";
        assert_eq!(parse_df_bytes(text).unwrap(), 1000);
        let text = "Filesystem 1B-blocks Used Available Use% Mounted on\n\
                    map auto home 2000 10 1990 1% /\n";
        assert_eq!(parse_df_bytes(text).unwrap(), 2000);
    }

    #[test]
    fn df_output_without_a_data_row_is_an_error_naming_df() {
        for text in [
            "",
            "df: /: No such file or directory",
            "Filesystem        1B-blocks        Used   Available Use% Mounted on\n",
            "Filesystem 1B-blocks Used Available\n/dev/vda 2705531",
            "Filesystem 1B-blocks Used Available\n/dev/vda 99999999999999999999999 1 1",
        ] {
            let err = parse_df_bytes(text).unwrap_err();
            assert_eq!(err.command(), DF, "{text:?}");
        }
    }

    #[test]
    fn os_release_values_may_be_double_quoted_single_quoted_or_bare() {
        let text = "# comment\n\
                    PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\n\
                    ID=ubuntu\n\
                    VERSION_ID='24.04'\n";
        assert_eq!(
            parse_os_release(text),
            OsRelease {
                id: "ubuntu".into(),
                version_id: "24.04".into(),
                pretty_name: "Ubuntu 24.04.3 LTS".into(),
            }
        );
    }

    #[test]
    fn os_release_backslash_escapes_inside_double_quotes_are_undone() {
        let os = parse_os_release(r#"PRETTY_NAME="My \"Linux\" \\ \$HOME""#);
        assert_eq!(os.pretty_name, r#"My "Linux" \ $HOME"#);
    }

    #[test]
    fn os_release_without_keys_gets_the_defaults_from_the_spec() {
        let os = parse_os_release("cat: /etc/os-release: No such file or directory");
        assert_eq!(os.id, "linux");
        assert_eq!(os.version_id, "");
        assert_eq!(os.pretty_name, "Linux");
    }

    #[test]
    fn os_release_tolerates_unterminated_quotes_and_junk_lines() {
        let os = parse_os_release("ID=\"arch\nlower=case\n=x\nVERSION_ID='1\nnot a pair\n");
        assert_eq!(os.id, "arch");
        assert_eq!(os.version_id, "1");
    }
}
