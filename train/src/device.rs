//! Which libtorch the trainer runs on and which device it trains on.

use std::fmt;

use tch::{Device, Kind, Tensor};

/// What the linked libtorch offers.
#[derive(Debug, Clone)]
pub struct TorchInfo {
    pub cuda_devices: usize,
    pub cudnn: bool,
    pub threads: i32,
    /// A small computation checked against its known result: proves the library loads and runs.
    pub smoke_ok: bool,
}

impl TorchInfo {
    pub fn probe() -> anyhow::Result<Self> {
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
        let b = a.matmul(&a.transpose(0, 1));
        let got: Vec<f32> = Vec::<f32>::try_from(b.flatten(0, -1))?;
        Ok(Self {
            cuda_devices: tch::Cuda::device_count() as usize,
            cudnn: tch::Cuda::cudnn_is_available(),
            threads: tch::get_num_threads(),
            smoke_ok: got == [5.0, 14.0, 14.0, 50.0],
        })
    }

    /// The device training should use: the first CUDA device if any, else the CPU.
    pub fn default_device(&self) -> Device {
        if self.cuda_devices > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }
    }
}

impl fmt::Display for TorchInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "libtorch: linked through tch")?;
        writeln!(f, "  cpu threads:  {}", self.threads)?;
        writeln!(f, "  cuda devices: {}", self.cuda_devices)?;
        writeln!(f, "  cudnn:        {}", self.cudnn)?;
        write!(
            f,
            "  smoke test:   {}",
            if self.smoke_ok { "ok" } else { "WRONG RESULT" }
        )
    }
}
