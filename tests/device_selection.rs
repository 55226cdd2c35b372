//! `--device auto|cpu|cuda|cuda:N`: parsing, the CPU fallback of `auto`, and the errors for a GPU that is not
//! there, through the library and through the `labpipe` binary. The machines these run on have no GPU; with
//! the `cuda` feature they check the "no device found" path instead of "built without CUDA support".

use crate::util::binary::{command, stderr};
use labpipe::device::{self, DeviceError, DeviceRequest};

/// True when a CUDA device can really be opened here (only on a GPU machine with a `cuda` build).
fn gpu_present() -> bool {
    device::cuda_compiled() && candle_core::Device::new_cuda(0).is_ok()
}

#[test]
fn parses_every_accepted_form() {
    assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
    assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
    assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
    assert_eq!("cuda:0".parse(), Ok(DeviceRequest::Cuda(0)));
    assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
}

#[test]
fn cuda_with_a_non_numeric_index_is_a_parse_error() {
    let err = "cuda:x".parse::<DeviceRequest>().unwrap_err();
    assert_eq!(
        err,
        DeviceError::BadIndex {
            given: "cuda:x".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("`cuda:x`") && msg.contains("whole number"), "{msg}");
}

#[test]
fn unknown_strings_list_the_choices() {
    for bad in ["gpu", "", "CPU", "cuda0", "cudа", "mps"] {
        let err = bad.parse::<DeviceRequest>().unwrap_err();
        assert_eq!(err, DeviceError::Unknown { given: bad.into() });
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{bad}`")), "{msg}");
        assert!(msg.contains("auto, cpu, cuda or cuda:N"), "{msg}");
    }
    let msg = device::select(Some("gpu")).unwrap_err();
    assert!(
        msg.contains("unknown device `gpu`") && msg.contains("auto, cpu, cuda or cuda:N"),
        "{msg}"
    );
}

#[test]
fn cpu_is_always_the_cpu_with_no_notice() {
    let s = device::choose(DeviceRequest::Cpu).unwrap();
    assert!(s.device.is_cpu());
    assert!(s.notice.is_none());
    assert!(device::select(Some("cpu")).unwrap().is_cpu());
}

#[test]
fn auto_without_a_gpu_is_the_cpu_with_a_one_line_notice() {
    if gpu_present() {
        let s = device::choose(DeviceRequest::Auto).unwrap();
        assert_eq!(device::name(&s.device), "cuda:0");
        return;
    }
    let s = device::choose(DeviceRequest::Auto).unwrap();
    assert!(s.device.is_cpu());
    assert_eq!(device::kind(&s.device).as_str(), "cpu");
    let notice = s.notice.expect("auto fell back to the CPU without a notice");
    assert!(!notice.contains('\n'), "{notice}");
    assert!(notice.contains("running on the CPU"), "{notice}");
    if device::cuda_compiled() {
        assert!(notice.contains("no CUDA device found"), "{notice}");
    } else {
        assert!(notice.contains("built without CUDA support"), "{notice}");
    }
    // The default request is `auto`.
    assert!(device::select(None).unwrap().is_cpu());
}

#[test]
fn explicit_cuda_without_a_gpu_is_an_error_naming_the_device_and_the_fix() {
    if gpu_present() {
        return;
    }
    for (given, shown) in [("cuda", "`cuda:0`"), ("cuda:2", "`cuda:2`")] {
        let request: DeviceRequest = given.parse().unwrap();
        let err = device::choose(request).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(shown), "{msg}");
        assert!(msg.contains("--device cpu"), "{msg}");
        if device::cuda_compiled() {
            assert!(matches!(err, DeviceError::Unavailable { .. }), "{err:?}");
            assert!(msg.contains("no usable CUDA device found"), "{msg}");
        } else {
            assert_eq!(
                err,
                DeviceError::NotCompiled {
                    requested: shown.trim_matches('`').into()
                }
            );
            assert!(
                msg.contains("built without CUDA support") && msg.contains("--features cuda"),
                "{msg}"
            );
        }
    }
}

/// `labpipe plan` on the quickstart pipeline with `--device DEVICE`: (exit code, stderr).
fn plan_with_device(device: &str) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let pipeline = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/quickstart.yaml");
    let o = command(out.path(), &["plan", pipeline, "--device", device, "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), stderr(&o))
}

#[test]
fn cli_rejects_bad_device_strings_with_the_choices() {
    let (code, err) = plan_with_device("gpu");
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("unknown device `gpu`") && err.contains("auto, cpu, cuda or cuda:N"),
        "{err}"
    );

    let (code, err) = plan_with_device("cuda:x");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("`cuda:x`") && err.contains("whole number"), "{err}");
}

#[test]
fn cli_refuses_cuda_without_a_gpu_and_accepts_cpu() {
    let (code, err) = plan_with_device("cpu");
    assert_eq!(code, 0, "{err}");
    if gpu_present() {
        return;
    }
    let (code, err) = plan_with_device("cuda");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("`cuda:0`"), "{err}");
    assert!(
        err.contains("built without CUDA support") || err.contains("no usable CUDA device found"),
        "{err}"
    );
}
