//! The featured templates Parasol ships: what a GPU user most often starts
//! an instance for, each a complete launch configuration that runs as is.
//!
//! Their ids are fixed, so that scripts and docs can name them across
//! servers and versions; they are readable by every account and writable by
//! none. Models are ungated ones, so the `HF_TOKEN` placeholders may stay
//! empty (the Hugging Face client treats an empty token as none) until a
//! user picks a gated model.

use std::sync::OnceLock;

use base64::Engine;
use parasol_api::{
    DockerConfiguration, Env, LaunchConfiguration, LaunchType, Networking, PortMappings,
    ScriptConfiguration, Template, UfwRule, VolumeMounts,
};
use uuid::Uuid;

/// Id of the vLLM OpenAI-compatible server.
pub const VLLM: Uuid = Uuid::from_u128(0xf3a7e0d0_5e1e_4c7e_9a11_000000000001);
/// Id of JupyterLab with PyTorch.
pub const JUPYTER_PYTORCH: Uuid = Uuid::from_u128(0xf3a7e0d0_5e1e_4c7e_9a11_000000000002);
/// Id of the Ollama server.
pub const OLLAMA: Uuid = Uuid::from_u128(0xf3a7e0d0_5e1e_4c7e_9a11_000000000003);
/// Id of Hugging Face text-generation-inference.
pub const TGI: Uuid = Uuid::from_u128(0xf3a7e0d0_5e1e_4c7e_9a11_000000000004);
/// Id of the GPU health check script.
pub const GPU_CHECK: Uuid = Uuid::from_u128(0xf3a7e0d0_5e1e_4c7e_9a11_000000000005);

/// Shown as the author of every featured template.
const AUTHOR: &str = "Parasol";

/// Every featured template, in the order `/templates/featured` lists them.
pub fn all() -> &'static [Template] {
    static ALL: OnceLock<Vec<Template>> = OnceLock::new();
    ALL.get_or_init(build)
}

/// The featured template with this id, if there is one.
pub fn get(id: Uuid) -> Option<&'static Template> {
    all().iter().find(|t| t.id == id)
}

fn build() -> Vec<Template> {
    vec![
        docker(
            VLLM,
            "vLLM OpenAI-compatible server",
            "Serves a Hugging Face model with vLLM's OpenAI-compatible API on port 8000 \
             (/v1/models, /v1/chat/completions, /v1/completions). Change --model in args to \
             serve another model, and set HF_TOKEN for gated ones. The API is open to anyone \
             who can reach the port: add --api-key to args, or narrow from_ip in the firewall \
             rules.",
            DockerConfiguration {
                image: "vllm/vllm-openai:latest".into(),
                args: Some("--model Qwen/Qwen2.5-7B-Instruct".into()),
                // PyTorch's worker processes share tensors through /dev/shm.
                shared_memory_in_gb: Some(16),
                envs: None,
                port_mappings: Some(vec![ports(8000, 8000)]),
                // Weights survive a container restart instead of downloading again.
                volume_mounts: Some(vec![mount(
                    "/root/.cache/huggingface",
                    "/root/.cache/huggingface",
                )]),
                registry_credentials: None,
            },
            vec![hf_token()],
            &["llm", "inference", "vllm", "openai-api"],
            &[8000],
        ),
        docker(
            JUPYTER_PYTORCH,
            "JupyterLab with PyTorch",
            "JupyterLab with PyTorch and CUDA 12 (the Jupyter Docker Stacks image) on port 8888. \
             The login token is printed in the container's log (docker logs); to choose it \
             yourself, add a JUPYTER_TOKEN env when you create the instance.",
            DockerConfiguration {
                image: "quay.io/jupyter/pytorch-notebook:cuda12-latest".into(),
                args: None,
                // DataLoader workers pass batches through /dev/shm.
                shared_memory_in_gb: Some(8),
                envs: None,
                port_mappings: Some(vec![ports(8888, 8888)]),
                volume_mounts: None,
                registry_credentials: None,
            },
            vec![],
            &["notebook", "jupyter", "pytorch"],
            &[8888],
        ),
        docker(
            OLLAMA,
            "Ollama",
            "Ollama's model server on port 11434. Pull and chat through its API \
             (POST /api/pull, /api/chat) or run `docker exec -it <container> ollama run \
             llama3.2` over SSH. Ollama has no authentication: narrow from_ip in the firewall \
             rules to your own network.",
            DockerConfiguration {
                image: "ollama/ollama:latest".into(),
                args: None,
                shared_memory_in_gb: None,
                envs: None,
                port_mappings: Some(vec![ports(11434, 11434)]),
                // Pulled models survive a container restart.
                volume_mounts: Some(vec![mount("/root/.ollama", "/root/.ollama")]),
                registry_credentials: None,
            },
            vec![],
            &["llm", "inference", "ollama"],
            &[11434],
        ),
        docker(
            TGI,
            "Text Generation Inference",
            "Hugging Face's text-generation-inference server on port 8080, with an \
             OpenAI-compatible /v1/chat/completions beside its own /generate. Change \
             --model-id in args to serve another model, and set HF_TOKEN for gated ones.",
            DockerConfiguration {
                image: "ghcr.io/huggingface/text-generation-inference:latest".into(),
                args: Some("--model-id Qwen/Qwen2.5-7B-Instruct".into()),
                // NCCL between shards uses /dev/shm; 1 GB is what TGI's docs give.
                shared_memory_in_gb: Some(1),
                envs: None,
                // The server listens on port 80 inside its container.
                port_mappings: Some(vec![ports(8080, 80)]),
                volume_mounts: Some(vec![mount("/root/tgi-data", "/data")]),
                registry_credentials: None,
            },
            vec![hf_token()],
            &["llm", "inference", "tgi", "openai-api"],
            &[8080],
        ),
        Template {
            id: GPU_CHECK,
            name: "GPU health check".into(),
            description: Some(
                "A startup script that records nvidia-smi's view of every GPU and a short fp16 \
                 matrix-multiply benchmark per GPU (in a PyTorch container) to \
                 ~/gpu-check.log, then leaves the machine idle for you over SSH."
                    .into(),
            ),
            author: Some(AUTHOR.into()),
            logo: None,
            public: true,
            launch_configuration: Some(LaunchConfiguration {
                kind: LaunchType::Script,
                docker_configuration: None,
                script_configuration: Some(ScriptConfiguration {
                    base64_script: base64::engine::general_purpose::STANDARD
                        .encode(GPU_CHECK_SCRIPT),
                }),
            }),
            auto_delete: None,
            alert: None,
            volume_mount: None,
            tags: vec!["diagnostics".into(), "benchmark".into()],
            envs: vec![],
            networking: Some(firewall(&[])),
            idle_policy: None,
            on_unhealthy: None,
        },
    ]
}

const GPU_CHECK_SCRIPT: &str = r#"#!/bin/bash
# Parasol featured template: GPU health check.
LOG="${HOME:-/root}/gpu-check.log"
exec >>"$LOG" 2>&1
echo "== gpu check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi
nvidia-smi --query-gpu=index,name,driver_version,memory.total,temperature.gpu,power.draw --format=csv
docker run --rm --gpus all pytorch/pytorch:latest python -c '
import time, torch
n = 8192
for i in range(torch.cuda.device_count()):
    d = torch.device("cuda", i)
    a = torch.randn(n, n, device=d, dtype=torch.float16)
    a @ a
    torch.cuda.synchronize(d)
    t = time.time()
    for _ in range(50):
        a @ a
    torch.cuda.synchronize(d)
    s = time.time() - t
    print(f"gpu {i} {torch.cuda.get_device_name(i)}: {50 * 2 * n**3 / s / 1e12:.1f} TFLOPS fp16")
'
echo "== done"
"#;

fn docker(
    id: Uuid,
    name: &str,
    description: &str,
    dc: DockerConfiguration,
    envs: Vec<Env>,
    tags: &[&str],
    open_ports: &[u16],
) -> Template {
    Template {
        id,
        name: name.into(),
        description: Some(description.into()),
        author: Some(AUTHOR.into()),
        logo: None,
        public: true,
        launch_configuration: Some(LaunchConfiguration {
            kind: LaunchType::Docker,
            docker_configuration: Some(dc),
            script_configuration: None,
        }),
        auto_delete: None,
        alert: None,
        volume_mount: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        envs,
        networking: Some(firewall(open_ports)),
        idle_policy: None,
        on_unhealthy: None,
    }
}

/// SSH plus the service's own ports, over TCP from anywhere.
fn firewall(open_ports: &[u16]) -> Networking {
    let allow = |port: u16| UfwRule {
        rule: Some("allow".into()),
        from_ip: None,
        to_ip: None,
        port: Some(port.to_string()),
        proto: Some("tcp".into()),
    };
    Networking {
        ufw_rules: Some(
            std::iter::once(22)
                .chain(open_ports.iter().copied())
                .map(allow)
                .collect(),
        ),
    }
}

/// An empty token: fine for ungated models, to be filled for gated ones.
fn hf_token() -> Env {
    Env {
        name: "HF_TOKEN".into(),
        value: String::new(),
    }
}

fn ports(host_port: i64, container_port: i64) -> PortMappings {
    PortMappings {
        host_port,
        container_port,
    }
}

fn mount(host_path: &str, container_path: &str) -> VolumeMounts {
    VolumeMounts {
        host_path: host_path.into(),
        container_path: container_path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn featured_templates_pass_the_checks_saved_templates_get() {
        for t in all() {
            super::super::templates::check(t).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert!(
                t.public && t.author.as_deref() == Some(AUTHOR),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn featured_ids_are_distinct_and_found_by_get() {
        let ids: std::collections::BTreeSet<Uuid> = all().iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), all().len());
        for id in [VLLM, JUPYTER_PYTORCH, OLLAMA, TGI, GPU_CHECK] {
            assert_eq!(get(id).map(|t| t.id), Some(id));
        }
        assert!(get(Uuid::nil()).is_none());
    }

    #[test]
    fn the_gpu_check_script_decodes_to_a_bash_script() {
        let lc = get(GPU_CHECK)
            .unwrap()
            .launch_configuration
            .as_ref()
            .unwrap();
        let b64 = &lc.script_configuration.as_ref().unwrap().base64_script;
        let text = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert!(String::from_utf8(text)
            .unwrap()
            .starts_with("#!/bin/bash\n"));
    }
}
