//! Choosing the compute device: `auto`, `cpu`, `cuda`, `cuda:N`.
//!
//! Candle's `Device::cuda_if_available` decides at compile time, so a `cuda` build started on a machine
//! without a GPU (or without the driver) would fail; instead every CUDA request here really opens the device
//! and `auto` falls back to the CPU when that fails.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// The choices `--device` accepts, for error messages and help text.
pub const CHOICES: &str = "auto, cpu, cuda or cuda:N (N = GPU index, e.g. cuda:1)";

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first GPU when labpipe was built with CUDA and one is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this index (`cuda` alone is index 0).
    Cuda(usize),
}

/// Why a device request could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The string is none of the accepted forms.
    #[error("unknown device `{given}`: expected {CHOICES}")]
    Unknown {
        /// The string as given.
        given: String,
    },
    /// `cuda:` followed by something that is not a GPU index.
    #[error("bad device `{given}`: the GPU index after `cuda:` must be a whole number such as cuda:0")]
    BadIndex {
        /// The string as given.
        given: String,
    },
    /// A GPU was asked for but this binary has no CUDA backend.
    #[error(
        "device `{requested}` requested, but this labpipe was built without CUDA support: \
         rebuild it with `cargo build --release --features cuda`, or use --device cpu (or auto)"
    )]
    NotCompiled {
        /// The device asked for, e.g. `cuda:0`.
        requested: String,
    },
    /// CUDA is compiled in but the device could not be opened (no GPU, no driver, bad index).
    #[error(
        "device `{requested}` is not available: no usable CUDA device found ({reason}); \
         check `nvidia-smi` and the NVIDIA driver, or use --device cpu (or auto)"
    )]
    Unavailable {
        /// The device asked for, e.g. `cuda:1`.
        requested: String,
        /// What the CUDA driver said.
        reason: String,
    },
}

/// `--device` of `run --jobs`: one device for every run, or a list of GPUs that the runs are spread over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSet {
    /// Every run on this device (`auto`, `cpu`, `cuda`, `cuda:N`).
    One(DeviceRequest),
    /// These GPUs, in this order (`cuda:0,cuda:2`).
    Gpus(Vec<usize>),
    /// Every GPU this machine has (`cuda:all`).
    AllGpus,
}

/// Why a `--device` list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceSetError {
    /// An entry is not a device.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A list names something other than GPUs (`cpu,cuda:0`, `auto,cuda:1`).
    #[error(
        "bad device list `{given}`: a list names GPUs only, e.g. cuda:0,cuda:1 (or cuda:all);          `{entry}` is not one"
    )]
    NotAGpu {
        /// The whole list.
        given: String,
        /// The entry that is not `cuda:N`.
        entry: String,
    },
    /// A GPU is listed twice.
    #[error("bad device list `{given}`: cuda:{index} is listed twice")]
    Duplicate {
        /// The whole list.
        given: String,
        /// The GPU.
        index: usize,
    },
}

impl FromStr for DeviceSet {
    type Err = DeviceSetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "cuda:all" {
            return Ok(DeviceSet::AllGpus);
        }
        if !s.contains(',') {
            return Ok(DeviceSet::One(s.parse()?));
        }
        let mut gpus = Vec::new();
        for entry in s.split(',') {
            match entry.parse()? {
                DeviceRequest::Cuda(n) if entry != "cuda" => {
                    if gpus.contains(&n) {
                        return Err(DeviceSetError::Duplicate {
                            given: s.to_string(),
                            index: n,
                        });
                    }
                    gpus.push(n);
                }
                _ => {
                    return Err(DeviceSetError::NotAGpu {
                        given: s.to_string(),
                        entry: entry.to_string(),
                    });
                }
            }
        }
        Ok(DeviceSet::Gpus(gpus))
    }
}

impl DeviceSet {
    /// The devices the runs go to, each as `--device` takes it (`cpu`, `cuda:1`), after checking that each
    /// can be opened here: a GPU that is missing, or CUDA support that is not compiled in, is an error now
    /// rather than in every run. `cuda:all` is every GPU that opens, counting from cuda:0.
    pub fn resolve(&self) -> Result<Vec<String>, DeviceError> {
        match self {
            DeviceSet::One(request) => Ok(vec![name(&choose(*request)?.device)]),
            DeviceSet::Gpus(gpus) => gpus
                .iter()
                .map(|&n| choose(DeviceRequest::Cuda(n)).map(|s| name(&s.device)))
                .collect(),
            DeviceSet::AllGpus => {
                if !cuda_compiled() {
                    return Err(DeviceError::NotCompiled {
                        requested: "cuda:all".into(),
                    });
                }
                let mut found = Vec::new();
                loop {
                    match open_cuda(found.len()) {
                        // Only counted: each run opens its own GPU, so this one is closed again at once.
                        Ok(device) => found.push(name(&device)),
                        Err(reason) if found.is_empty() => {
                            return Err(DeviceError::Unavailable {
                                requested: "cuda:all".into(),
                                reason,
                            });
                        }
                        Err(_) => return Ok(found),
                    }
                }
            }
        }
    }

    /// How many runs go at once when `--jobs` is not given: one per listed GPU, else one.
    pub fn default_jobs(&self, resolved: &[String]) -> usize {
        match self {
            DeviceSet::One(_) => 1,
            DeviceSet::Gpus(_) | DeviceSet::AllGpus => resolved.len().max(1),
        }
    }
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                // `parse::<usize>` alone would accept `+1`; an index is digits only.
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| DeviceError::BadIndex { given: s.to_string() }),
                Some(_) => Err(DeviceError::BadIndex { given: s.to_string() }),
                None => Err(DeviceError::Unknown { given: s.to_string() }),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The device chosen for a request, and a one-line notice for the user when `auto` settled on the CPU.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The device to compute on.
    pub device: Device,
    /// Why `auto` did not pick a GPU; None when the choice is what was asked for.
    pub notice: Option<String>,
}

/// True when this binary was built with Candle's CUDA backend (labpipe's `cuda` feature).
pub fn cuda_compiled() -> bool {
    candle_core::utils::cuda_is_available()
}

/// The error's message without the backtrace Candle attaches when RUST_BACKTRACE is set (one line for users).
fn message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => message(inner),
        other => other.to_string(),
    }
}

/// Open CUDA device `ordinal`, turning a driver error, or a panic of a dynamically loaded driver, into a reason.
fn open_cuda(ordinal: usize) -> Result<Device, String> {
    match std::panic::catch_unwind(|| Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(message(&e)),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA driver failed to load".to_string())),
    }
}

/// Pick the device for `request`; `auto` never fails, an explicit CUDA request without a usable GPU does.
pub fn choose(request: DeviceRequest) -> Result<Selection, DeviceError> {
    let exact = |device| Selection { device, notice: None };
    match request {
        DeviceRequest::Cpu => Ok(exact(Device::Cpu)),
        DeviceRequest::Cuda(_) if !cuda_compiled() => Err(DeviceError::NotCompiled {
            requested: request.to_string(),
        }),
        DeviceRequest::Cuda(n) => open_cuda(n)
            .map(exact)
            .map_err(|reason| DeviceError::Unavailable {
                requested: request.to_string(),
                reason,
            }),
        DeviceRequest::Auto if !cuda_compiled() => Ok(Selection {
            device: Device::Cpu,
            notice: Some(
                "note: running on the CPU (this labpipe was built without CUDA support; \
                 build with `--features cuda` to use a GPU)"
                    .to_string(),
            ),
        }),
        DeviceRequest::Auto => Ok(match open_cuda(0) {
            Ok(device) => exact(device),
            Err(reason) => Selection {
                device: Device::Cpu,
                notice: Some(format!(
                    "note: no CUDA device found ({reason}); running on the CPU"
                )),
            },
        }),
    }
}

/// Pick the device for `request` (`auto` when None); the error is a message naming the device and the fix.
pub fn select(request: Option<&str>) -> Result<Device, String> {
    let request: DeviceRequest = request
        .unwrap_or("auto")
        .parse()
        .map_err(|e: DeviceError| e.to_string())?;
    choose(request).map(|s| s.device).map_err(|e| e.to_string())
}

/// The kind of device a result was computed on: part of the train and evaluate keys, since each kind rounds
/// differently. Recorded in each run's record so that `status` and `plan` compute the keys a run was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceKind {
    /// The CPU.
    #[default]
    #[serde(rename = "cpu")]
    Cpu,
    /// A CUDA GPU through Candle's kernels.
    #[serde(rename = "cuda")]
    Cuda,
    /// A CUDA GPU with labpipe's own kernels for BatchNorm, max-pool and the optimizer.
    #[serde(rename = "cuda+kernels")]
    CudaKernels,
}

impl DeviceKind {
    /// The name written in keys and records.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::CudaKernels => "cuda+kernels",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of `device`.
pub fn kind(device: &Device) -> DeviceKind {
    if !device.is_cuda() {
        return DeviceKind::Cpu;
    }
    // labpipe's CUDA kernels round differently from Candle's ops: results, and so cache keys, differ.
    #[cfg(feature = "cuda")]
    if crate::cuda::kernels_enabled() {
        return DeviceKind::CudaKernels;
    }
    DeviceKind::Cuda
}

/// The kinds of device a run that asks for `request` may be computed on, wherever it ends up running:
/// `auto` is the CPU on a machine without a GPU and a GPU elsewhere (a Slurm job may land on either).
pub fn possible_kinds(request: DeviceRequest) -> Vec<DeviceKind> {
    #[cfg(feature = "cuda")]
    let gpu = if crate::cuda::kernels_enabled() {
        DeviceKind::CudaKernels
    } else {
        DeviceKind::Cuda
    };
    #[cfg(not(feature = "cuda"))]
    let gpu = DeviceKind::Cuda;
    match request {
        DeviceRequest::Cpu => vec![DeviceKind::Cpu],
        DeviceRequest::Cuda(_) => vec![gpu],
        DeviceRequest::Auto if cuda_compiled() => vec![DeviceKind::Cpu, gpu],
        DeviceRequest::Auto => vec![DeviceKind::Cpu],
    }
}

/// The device as a user writes it: `cpu` or `cuda:N`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_parse() {
        for r in [
            DeviceRequest::Auto,
            DeviceRequest::Cpu,
            DeviceRequest::Cuda(0),
            DeviceRequest::Cuda(12),
        ] {
            assert_eq!(r.to_string().parse::<DeviceRequest>(), Ok(r));
        }
    }

    #[test]
    fn index_must_be_plain_digits() {
        for bad in [
            "cuda:",
            "cuda:+1",
            "cuda:-1",
            "cuda: 1",
            "cuda:1.0",
            "cuda:99999999999999999999999",
        ] {
            assert_eq!(
                bad.parse::<DeviceRequest>(),
                Err(DeviceError::BadIndex {
                    given: bad.to_string()
                })
            );
        }
    }

    #[test]
    fn device_sets_parse() {
        assert_eq!("cpu".parse(), Ok(DeviceSet::One(DeviceRequest::Cpu)));
        assert_eq!("cuda:1".parse(), Ok(DeviceSet::One(DeviceRequest::Cuda(1))));
        assert_eq!("cuda:all".parse(), Ok(DeviceSet::AllGpus));
        assert_eq!("cuda:2,cuda:0".parse(), Ok(DeviceSet::Gpus(vec![2, 0])));
        let err = |s: &str| s.parse::<DeviceSet>().unwrap_err().to_string();
        assert_eq!(
            err("cuda:0,cuda:0"),
            "bad device list `cuda:0,cuda:0`: cuda:0 is listed twice"
        );
        assert!(
            err("cpu,cuda:0").contains("`cpu` is not one"),
            "{}",
            err("cpu,cuda:0")
        );
        assert!(err("cuda,cuda:1").contains("`cuda` is not one"));
        assert!(err("cuda:0,").contains("unknown device ``"), "{}", err("cuda:0,"));
        assert!(err("cuda:0,cuda:x").contains("bad device `cuda:x`"));
        assert!(err("gpu").contains("unknown device `gpu`"));
    }

    #[test]
    fn device_sets_resolve_or_say_why_not() {
        assert_eq!(
            DeviceSet::One(DeviceRequest::Cpu).resolve(),
            Ok(vec!["cpu".to_string()])
        );
        if !cuda_compiled() {
            let e = DeviceSet::Gpus(vec![0, 1]).resolve().unwrap_err().to_string();
            assert!(
                e.contains("`cuda:0` requested, but this labpipe was built without CUDA"),
                "{e}"
            );
            let e = DeviceSet::AllGpus.resolve().unwrap_err().to_string();
            assert!(
                e.contains("`cuda:all` requested, but this labpipe was built without CUDA"),
                "{e}"
            );
        }
        // No machine has GPU 4096: a listed GPU that is missing is an error.
        assert!(DeviceSet::Gpus(vec![4096]).resolve().is_err());
    }

    #[test]
    fn reasons_carry_no_backtrace() {
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("no driver".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(message(&e), "no driver");
    }

    #[test]
    fn cpu_device_names() {
        assert_eq!(name(&Device::Cpu), "cpu");
        assert_eq!(kind(&Device::Cpu), DeviceKind::Cpu);
        assert_eq!(
            serde_json::to_value(DeviceKind::CudaKernels).unwrap(),
            "cuda+kernels"
        );
    }
}
