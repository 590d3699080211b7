//! `parasol offers` and `parasol launch`: say what you need, see the
//! candidates in the order they would be tried, and launch the cheapest
//! one with capacity (Parasol's `/instances/launch`).

use std::process::ExitCode;

use parasol_api::{
    CandidatesResponse, CreateResponse, GpuTypes, LaunchRequest, OnPreemption, RentalChoice,
    Requirements,
};

use super::client::{Api, CliError};
use super::instances::{follow, WaitArgs};
use super::output::{price, print_raw, Format, Table};

/// What the machine needs, as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RequirementArgs {
    /// GPU type and count: `H100:8`, `A6000`, or several types with one
    /// count: `H100,H200:8`.
    #[arg(long, value_name = "TYPE[:COUNT]")]
    pub gpu: Option<String>,
    /// Most dollars per hour per machine.
    #[arg(long, value_name = "DOLLARS")]
    pub max_price: Option<String>,
    /// Least GPU memory per GPU, in GB.
    #[arg(long, value_name = "GB")]
    pub min_gpu_memory: Option<i64>,
    /// Least vCPUs.
    #[arg(long)]
    pub min_vcpus: Option<i64>,
    /// Least memory, in GB.
    #[arg(long, value_name = "GB")]
    pub min_memory: Option<i64>,
    /// Only this cloud (repeatable).
    #[arg(long = "cloud", value_name = "CLOUD")]
    pub clouds: Vec<String>,
    /// Never this cloud (repeatable).
    #[arg(long = "exclude-cloud", value_name = "CLOUD")]
    pub exclude_clouds: Vec<String>,
    /// Only this region (repeatable).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Never this region (repeatable).
    #[arg(long = "exclude-region", value_name = "REGION")]
    pub exclude_regions: Vec<String>,
    /// Spot only (cheaper, can be preempted).
    #[arg(long, conflicts_with = "any")]
    pub spot: bool,
    /// Spot or on-demand, whichever is cheaper.
    #[arg(long)]
    pub any: bool,
}

/// `parasol launch`.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub requirements: RequirementArgs,
    /// Name of the new instance.
    #[arg(long)]
    pub name: Option<String>,
    /// SSH key id; defaults to the account's default key.
    #[arg(long)]
    pub ssh_key: Option<String>,
    /// Operating system image; only offers that have it are candidates.
    #[arg(long)]
    pub os: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// When no candidate has capacity, keep trying this long.
    #[arg(long, value_name = "SECONDS")]
    pub wait_for_capacity: Option<i64>,
    /// Spot: replace the instance with a new launch when it is preempted.
    #[arg(long)]
    pub relaunch_on_preemption: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

impl RequirementArgs {
    fn to_requirements(&self) -> Result<Requirements, CliError> {
        let (gpu_type, num_gpus) = match &self.gpu {
            None => (None, None),
            Some(spec) => {
                let (types, count) = match spec.rsplit_once(':') {
                    Some((t, n)) => {
                        let n: i64 = n.trim().parse().map_err(|_| {
                            CliError::new(format!(
                                "--gpu {spec:?}: the count after ':' must be a whole number"
                            ))
                        })?;
                        (t, Some(n))
                    }
                    None => (spec.as_str(), None),
                };
                let types: Vec<String> = types
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect();
                let gpu = match types.len() {
                    0 => None,
                    1 => Some(GpuTypes::One(types[0].clone())),
                    _ => Some(GpuTypes::Any(types)),
                };
                (gpu, count)
            }
        };
        let max_hourly_price = self
            .max_price
            .as_deref()
            .map(|p| {
                crate::validate::dollars_to_cents("--max-price", p)
                    .map_err(|e| CliError::new(e.message))
            })
            .transpose()?;
        let list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        Ok(Requirements {
            gpu_type,
            num_gpus,
            min_gpu_memory_gb: self.min_gpu_memory,
            min_vcpus: self.min_vcpus,
            min_memory_gb: self.min_memory,
            clouds: list(&self.clouds),
            exclude_clouds: list(&self.exclude_clouds),
            regions: list(&self.regions),
            exclude_regions: list(&self.exclude_regions),
            max_hourly_price,
            rental_type: Some(if self.spot {
                RentalChoice::Spot
            } else if self.any {
                RentalChoice::Any
            } else {
                RentalChoice::OnDemand
            }),
        })
    }
}

/// `parasol offers`: the candidates a launch would try, in order.
pub async fn offers(api: &Api, format: Format, args: RequirementArgs) -> Result<(), CliError> {
    let req = LaunchRequest {
        dry_run: true,
        ..launch_request(args.to_requirements()?)
    };
    let answer = api.post("/instances/launch", Some(&req)).await?;
    if format == Format::Json {
        print_raw(&answer);
        return Ok(());
    }
    let found: CandidatesResponse = answer.parse()?;
    let mut t = Table::new(&[
        "#",
        "CLOUD",
        "REGION",
        "TYPE",
        "RENTAL",
        "$/HR",
        "AVAILABLE",
    ]);
    for (n, c) in found.candidates.iter().enumerate() {
        t.row(vec![
            (n + 1).to_string().into(),
            c.cloud.clone().into(),
            c.region.clone().into(),
            c.shade_instance_type.clone().into(),
            c.rental_type.as_str().into(),
            price(c.hourly_price).into(),
            if c.available { "yes" } else { "no" }.into(),
        ]);
    }
    t.print("No offer matches.");
    Ok(())
}

/// `parasol launch`: the cheapest candidate with capacity; with `--wait`,
/// follows it through every failover until it is active.
pub async fn launch(api: &Api, format: Format, args: LaunchArgs) -> Result<ExitCode, CliError> {
    let req = LaunchRequest {
        name: args.name.clone(),
        ssh_key_id: args.ssh_key.clone(),
        os: args.os.clone(),
        tags: (!args.tags.is_empty()).then(|| args.tags.clone()),
        wait_for_capacity_seconds: args.wait_for_capacity,
        on_preemption: args
            .relaunch_on_preemption
            .then_some(OnPreemption::Relaunch),
        ..launch_request(args.requirements.to_requirements()?)
    };
    let answer = api.post("/instances/launch", Some(&req)).await?;
    let created: CreateResponse = answer.parse()?;
    if !args.wait.wait {
        if format == Format::Json {
            print_raw(&answer);
        } else {
            println!("Launched instance {}", created.id);
            println!(
                "Follow it with `parasol instances get {}`, or launch with --wait.",
                created.id
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let label = args.name.clone().unwrap_or_else(|| created.id.to_string());
    follow(api, format, created.id, &label, args.wait.timeout, true).await
}

fn launch_request(requirements: Requirements) -> LaunchRequest {
    LaunchRequest {
        requirements,
        name: None,
        ssh_key_id: None,
        launch_configuration: None,
        envs: None,
        tags: None,
        auto_delete: None,
        alert: None,
        os: None,
        template_id: None,
        wait_for_capacity_seconds: None,
        on_preemption: None,
        idle_policy: None,
        on_unhealthy: None,
        dry_run: false,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        r: RequirementArgs,
    }

    fn parse(args: &[&str]) -> Result<Requirements, CliError> {
        let mut all = vec!["parasol"];
        all.extend(args);
        Cli::parse_from(all).r.to_requirements()
    }

    #[test]
    fn gpu_specs_name_types_and_a_count() {
        let r = parse(&["--gpu", "H100:8", "--max-price", "25", "--any"]).unwrap();
        assert_eq!(r.gpu_type, Some(GpuTypes::One("H100".into())));
        assert_eq!(r.num_gpus, Some(8));
        assert_eq!(r.max_hourly_price, Some(2500));
        assert_eq!(r.rental_type, Some(RentalChoice::Any));
        let r = parse(&["--gpu", "H100,H200:8", "--spot"]).unwrap();
        assert_eq!(
            r.gpu_type,
            Some(GpuTypes::Any(vec!["H100".into(), "H200".into()]))
        );
        assert_eq!(r.rental_type, Some(RentalChoice::Spot));
        let r = parse(&["--gpu", "A6000"]).unwrap();
        assert_eq!(r.num_gpus, None);
        assert!(parse(&["--gpu", "H100:eight"]).is_err());
        assert!(parse(&["--gpu", "H100", "--max-price", "cheap"]).is_err());
    }
}
