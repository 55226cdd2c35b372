//! Choosing the compute device: `auto`, `cpu`, `cuda`, `cuda:N`.

use candle_core::Device;

/// Pick the device for `request` (`auto` when None); a `cuda` request on a machine without one is an error,
/// `auto` falls back to the CPU with a notice.
pub fn select(request: Option<&str>) -> Result<Device, String> {
    match request.unwrap_or("auto") {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
        other => {
            let ordinal = match other.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| format!("unknown device `{other}`: expected auto, cpu, cuda or cuda:N"))?,
                None => {
                    return Err(format!(
                        "unknown device `{other}`: expected auto, cpu, cuda or cuda:N"
                    ));
                }
            };
            Device::new_cuda(ordinal).map_err(|e| format!("device `{other}` is not available: {e}"))
        }
    }
}

/// A short stable name of the device kind, part of cache keys.
pub fn kind(device: &Device) -> &'static str {
    if device.is_cuda() { "cuda" } else { "cpu" }
}
