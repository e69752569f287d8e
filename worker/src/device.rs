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

/// A `cuda:N` that this machine cannot run on. Without this check libtorch fails at the
/// first tensor, deep in training, with a C++ backtrace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDevice {
    /// libtorch sees no CUDA device at all.
    #[error(
        "device cuda:{0}: libtorch sees no CUDA device on this machine (no GPU, no driver, or a \
         CPU-only libtorch); use --device cpu or auto"
    )]
    NoCuda(usize),
    /// The machine has fewer GPUs than the number asked for.
    #[error(
        "device cuda:{wanted}: this machine has {count} CUDA device(s), cuda:0 to cuda:{last}",
        last = count - 1
    )]
    OutOfRange {
        /// The GPU number asked for.
        wanted: usize,
        /// How many GPUs libtorch sees.
        count: usize,
    },
}

impl DeviceSpec {
    /// The torch device, checked against the GPUs libtorch sees; `Auto` is the first GPU
    /// when there is one, else the CPU.
    pub fn resolve(self) -> Result<Device, NoDevice> {
        self.resolve_among(cuda_devices())
    }

    /// [`DeviceSpec::resolve`] on a machine with `count` GPUs.
    pub fn resolve_among(self, count: usize) -> Result<Device, NoDevice> {
        match self {
            DeviceSpec::Auto if count > 0 => Ok(Device::Cuda(0)),
            DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) if n < count => Ok(Device::Cuda(n)),
            DeviceSpec::Cuda(n) if count == 0 => Err(NoDevice::NoCuda(n)),
            DeviceSpec::Cuda(wanted) => Err(NoDevice::OutOfRange { wanted, count }),
        }
    }
}

/// How many CUDA devices libtorch sees (0 on a CPU-only machine).
pub fn cuda_devices() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
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

    #[test]
    fn resolving_checks_the_gpus_the_machine_has() {
        assert_eq!(DeviceSpec::Auto.resolve_among(0), Ok(Device::Cpu));
        assert_eq!(DeviceSpec::Auto.resolve_among(2), Ok(Device::Cuda(0)));
        assert_eq!(DeviceSpec::Cpu.resolve_among(2), Ok(Device::Cpu));
        assert_eq!(DeviceSpec::Cuda(1).resolve_among(2), Ok(Device::Cuda(1)));
        let none = DeviceSpec::Cuda(0).resolve_among(0).unwrap_err();
        assert_eq!(none, NoDevice::NoCuda(0));
        assert!(
            none.to_string()
                .starts_with("device cuda:0: libtorch sees no CUDA device")
        );
        let high = DeviceSpec::Cuda(3).resolve_among(2).unwrap_err();
        assert_eq!(
            high.to_string(),
            "device cuda:3: this machine has 2 CUDA device(s), cuda:0 to cuda:1"
        );
    }

    #[test]
    fn this_machine_resolves_what_libtorch_sees() {
        // Whatever the machine: auto and cpu always resolve, and one past the last GPU never.
        let count = cuda_devices();
        assert!(DeviceSpec::Auto.resolve().is_ok());
        assert_eq!(DeviceSpec::Cpu.resolve(), Ok(Device::Cpu));
        assert!(DeviceSpec::Cuda(count).resolve().is_err());
    }
}
