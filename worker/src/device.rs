//! Which torch device to train on, parsed from `cpu`, `auto` or `cuda:N`, and what to tell
//! the coordinator about it.

use std::str::FromStr;
use tch::Device;

/// A device choice as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first GPU when one is usable, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// GPU number N.
    Cuda(usize),
}

/// A device string that is none of `cpu`, `auto`, `cuda`, `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {0:?} is not cpu, auto or cuda:N")]
pub struct BadDevice(pub String);

impl FromStr for DeviceSpec {
    type Err = BadDevice;
    fn from_str(s: &str) -> Result<Self, BadDevice> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| BadDevice(s.into())),
        }
    }
}

impl DeviceSpec {
    /// The torch device; `Auto` is `Device::cuda_if_available()`.
    pub fn resolve(self) -> Device {
        match self {
            DeviceSpec::Auto => Device::cuda_if_available(),
            DeviceSpec::Cpu => Device::Cpu,
            DeviceSpec::Cuda(n) => Device::Cuda(n),
        }
    }
}

/// The name the coordinator stores for a device: `cpu` or `cuda:N`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

/// Torch intra-op threads: all cores, since the worker is the machine's main load. Tests
/// and benchmarks set their own.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }
}
