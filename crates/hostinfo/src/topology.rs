use crate::{excerpt, is_digits, ParseError, TOPO_QUERY};

/// How a host's GPUs are connected to each other, as Shadeform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Whether any two GPUs share NVLink, which is what makes multi-GPU
    /// training fast and what renters filter on.
    pub nvlink: bool,
    /// `"sxm"` when the GPUs are NVLinked, otherwise `"pcie"`.
    ///
    /// nvidia-smi cannot see the board form factor, so NVLink stands in for
    /// SXM: true for HGX/DGX boards, but PCIe cards joined by an NVLink
    /// bridge are reported as `"sxm"` too.
    pub interconnect: String,
}

/// Reads the matrix printed by [`TOPO_QUERY`](crate::TOPO_QUERY).
///
/// The first non-blank line is the header, naming one `GPU<n>` column per
/// GPU before any NIC or affinity columns; each `GPU<n>` row then holds
/// those GPU-to-GPU cells first. Any such cell of the form `NV<count>`
/// means NVLink. Terminal escape codes (nvidia-smi underlines the header)
/// are ignored. A single-GPU host's matrix holds only the `X` self cell and
/// yields PCIe without NVLink.
///
/// Output without a GPU header, or with fewer GPU rows or cells than the
/// header promises, is an error: it means nvidia-smi failed or the output
/// was cut short, and guessing "PCIe" could under-sell an NVLink machine.
pub fn parse_topology(topo_m: &str) -> Result<Topology, ParseError> {
    let text = strip_ansi(topo_m);
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| ParseError::new(TOPO_QUERY, "the output is empty"))?;
    let gpu_columns = header
        .split_whitespace()
        .take_while(|cell| is_gpu_label(cell))
        .count();
    if gpu_columns == 0 {
        return Err(ParseError::new(
            TOPO_QUERY,
            format!(
                "the first line should name GPU columns (GPU0, GPU1, ...): {}",
                excerpt(header)
            ),
        ));
    }

    let mut gpu_rows = 0;
    let mut nvlink = false;
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        match cells.first() {
            Some(label) if label.starts_with("Legend") => break,
            Some(label) if is_gpu_label(label) => {}
            // NIC rows and anything else carry no GPU-to-GPU links.
            _ => continue,
        }
        let Some(links) = cells.get(1..=gpu_columns) else {
            return Err(ParseError::new(
                TOPO_QUERY,
                format!(
                    "a row has fewer than the header's {gpu_columns} GPU cells: {}",
                    excerpt(line)
                ),
            ));
        };
        nvlink |= links.iter().any(|cell| is_nvlink(cell));
        gpu_rows += 1;
    }
    if gpu_rows != gpu_columns {
        return Err(ParseError::new(
            TOPO_QUERY,
            format!("the header names {gpu_columns} GPUs but {gpu_rows} GPU rows follow"),
        ));
    }

    Ok(Topology {
        nvlink,
        interconnect: if nvlink { "sxm" } else { "pcie" }.to_owned(),
    })
}

fn is_gpu_label(cell: &str) -> bool {
    cell.strip_prefix("GPU").is_some_and(is_digits)
}

fn is_nvlink(cell: &str) -> bool {
    cell.strip_prefix("NV").is_some_and(is_digits)
}

/// Removes ANSI escape sequences, which nvidia-smi emits even when its output
/// is captured rather than shown on a terminal.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // A control sequence runs up to its final byte, '@' through '~';
        // any other escape is two characters long, so consuming the one
        // after ESC is enough.
        if let Some('[') = chars.next() {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DGX/HGX H100 board: eight NVSwitch-connected GPUs plus two NICs,
    /// laid out the way nvidia-smi prints it (tab-separated, underlined
    /// header, NIC legend).
    const HGX_H100_8X: &str = concat!(
        "\t\u{1b}[4mGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tNIC0\tNIC1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\u{1b}[0m\n",
        "GPU0\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tPXB\tSYS\t0-55,112-167\t0\t\tN/A\n",
        "GPU1\tNV18\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tPXB\tSYS\t0-55,112-167\t0\t\tN/A\n",
        "GPU2\tNV18\tNV18\t X \tNV18\tNV18\tNV18\tNV18\tNV18\tSYS\tSYS\t0-55,112-167\t0\t\tN/A\n",
        "GPU3\tNV18\tNV18\tNV18\t X \tNV18\tNV18\tNV18\tNV18\tSYS\tSYS\t0-55,112-167\t0\t\tN/A\n",
        "GPU4\tNV18\tNV18\tNV18\tNV18\t X \tNV18\tNV18\tNV18\tSYS\tPXB\t56-111,168-223\t1\t\tN/A\n",
        "GPU5\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tNV18\tNV18\tSYS\tPXB\t56-111,168-223\t1\t\tN/A\n",
        "GPU6\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tNV18\tSYS\tSYS\t56-111,168-223\t1\t\tN/A\n",
        "GPU7\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\tNV18\t X \tSYS\tSYS\t56-111,168-223\t1\t\tN/A\n",
        "NIC0\tPXB\tPXB\tSYS\tSYS\tSYS\tSYS\tSYS\tSYS\t X \tSYS\n",
        "NIC1\tSYS\tSYS\tSYS\tSYS\tPXB\tPXB\tSYS\tSYS\tSYS\t X \n",
        "\n",
        "Legend:\n",
        "\n",
        "  X    = Self\n",
        "  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)\n",
        "  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node\n",
        "  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)\n",
        "  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)\n",
        "  PIX  = Connection traversing at most a single PCIe bridge\n",
        "  NV#  = Connection traversing a bonded set of # NVLinks\n",
        "\n",
        "NIC Legend:\n",
        "\n",
        "  NIC0: mlx5_0\n",
        "  NIC1: mlx5_1\n",
    );

    /// Four PCIe cards, two per CPU socket, with no NVLink bridges.
    const PCIE_4X: &str = concat!(
        "\t\u{1b}[4mGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\u{1b}[0m\n",
        "GPU0\t X \tPIX\tSYS\tSYS\t0-31\t0\t\tN/A\n",
        "GPU1\tPIX\t X \tSYS\tSYS\t0-31\t0\t\tN/A\n",
        "GPU2\tSYS\tSYS\t X \tPIX\t32-63\t1\t\tN/A\n",
        "GPU3\tSYS\tSYS\tPIX\t X \t32-63\t1\t\tN/A\n",
        "\n",
        "Legend:\n",
        "\n",
        "  X    = Self\n",
        "  NV#  = Connection traversing a bonded set of # NVLinks\n",
    );

    const SINGLE_GPU: &str = "\t\u{1b}[4mGPU0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\u{1b}[0m\nGPU0\t X \t0-15\t0\t\tN/A\n\nLegend:\n\n  X    = Self\n  NV#  = Connection traversing a bonded set of # NVLinks\n";

    #[test]
    fn an_eight_gpu_nvswitch_board_is_sxm_with_nvlink() {
        let topo = parse_topology(HGX_H100_8X).unwrap();
        assert_eq!(
            topo,
            Topology {
                nvlink: true,
                interconnect: "sxm".into()
            }
        );
    }

    #[test]
    fn pcie_cards_without_bridges_are_pcie_without_nvlink() {
        let topo = parse_topology(PCIE_4X).unwrap();
        assert!(!topo.nvlink);
        assert_eq!(topo.interconnect, "pcie");
    }

    #[test]
    fn a_single_gpu_with_only_the_self_cell_is_pcie() {
        let topo = parse_topology(SINGLE_GPU).unwrap();
        assert!(!topo.nvlink);
        assert_eq!(topo.interconnect, "pcie");
    }

    #[test]
    fn one_bridged_pair_among_pcie_cards_counts_as_nvlink() {
        let text = PCIE_4X.replacen("\tPIX\t", "\tNV4\t", 1);
        assert!(parse_topology(&text).unwrap().nvlink);
    }

    #[test]
    fn the_legend_mentioning_nv_does_not_count_as_nvlink() {
        let text = SINGLE_GPU.replace("NV#", "NV12");
        assert!(!parse_topology(&text).unwrap().nvlink);
    }

    #[test]
    fn space_aligned_output_without_escape_codes_also_parses() {
        let text = "        GPU0    GPU1    CPU Affinity    NUMA Affinity\n\
                    GPU0     X      NV2     0-19            N/A\n\
                    GPU1    NV2      X      0-19            N/A\n";
        assert!(parse_topology(text).unwrap().nvlink);
    }

    #[test]
    fn empty_or_error_text_is_an_error_naming_the_topology_command() {
        for text in [
            "",
            "\n\n",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "\u{1b}[4m",
        ] {
            let err = parse_topology(text).unwrap_err();
            assert_eq!(err.command(), TOPO_QUERY, "{text:?}");
        }
    }

    #[test]
    fn a_matrix_cut_short_is_an_error() {
        let cut = &HGX_H100_8X[..HGX_H100_8X.find("GPU5\tNV18").unwrap()];
        assert!(parse_topology(cut).unwrap_err().reason().contains("8 GPUs"));
        let cut = &HGX_H100_8X[..HGX_H100_8X.find("GPU1\tNV18").unwrap() - 50];
        assert!(parse_topology(cut).unwrap_err().reason().contains("fewer"));
    }

    #[test]
    fn escape_sequences_are_stripped_even_when_unterminated() {
        assert_eq!(strip_ansi("\u{1b}[4mGPU0\u{1b}[0m"), "GPU0");
        assert_eq!(strip_ansi("a\u{1b}[1;31"), "a");
        assert_eq!(strip_ansi("a\u{1b}"), "a");
    }
}
