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
