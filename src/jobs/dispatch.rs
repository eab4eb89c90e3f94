//! Running a generic job on the zoo model picked by name, on a device picked at run time.

use crate::__private::LayerDevice;
use crate::dfdx::nn::BuildModule;
use crate::dfdx::tensor::{Cpu, Synchronize};
use crate::model::{count_params, ModelDescription, VideoModel};
use crate::zoo::{self, ModelVisitor, ZooModel};

/// A device a job runs on, chosen at run time.
pub enum RunDevice {
    Cpu(Cpu),
    #[cfg(feature = "cuda")]
    Cuda(crate::dfdx::tensor::Cuda),
}

/// What a job's device must offer: the layers' ops and a way to wait for queued work.
pub(super) trait JobDevice: LayerDevice<f32> + Synchronize {}
impl<D: LayerDevice<f32> + Synchronize> JobDevice for D {}

/// What a job needs of a model: a zoo model's built type.
pub(super) trait JobModel<D: JobDevice>: VideoModel<f32, D> + BuildModule<D, f32> + Clone {}
impl<D: JobDevice, M: VideoModel<f32, D> + BuildModule<D, f32> + Clone> JobModel<D> for M {}

/// A job that runs on any zoo model on any device.
pub(super) trait Job {
    type Output;
    fn run<M: JobModel<D>, D: JobDevice>(self, device: D) -> Self::Output;
}

struct Dispatch<J, D>(J, D);

impl<J: Job, D: JobDevice> ModelVisitor<f32, D> for Dispatch<J, D> {
    type Output = J::Output;
    fn visit<M: ZooModel<f32, D>>(self) -> J::Output {
        self.0.run::<M::Model, D>(self.1)
    }
}

/// Runs `job` on the zoo model called `name` on `device`; `None` for a name not in the zoo.
/// Only this module's non-generic functions call it, so that each job is compiled for
/// every model once, here.
pub(super) fn on_model<J: Job>(name: &str, device: RunDevice, job: J) -> Option<J::Output> {
    match device {
        RunDevice::Cpu(dev) => zoo::visit(name, Dispatch(job, dev)),
        #[cfg(feature = "cuda")]
        RunDevice::Cuda(dev) => zoo::visit(name, Dispatch(job, dev)),
    }
}

struct Card;
impl ModelVisitor<f32, Cpu> for Card {
    type Output = (ModelDescription, usize);
    fn visit<M: ZooModel<f32, Cpu>>(self) -> Self::Output {
        (<M::Model as VideoModel<f32, Cpu>>::describe(), count_params::<f32, Cpu, M::Model>())
    }
}

/// The description and trainable parameter count of the zoo model called `name`; `None`
/// for a name not in the zoo.
pub fn describe(name: &str) -> Option<(ModelDescription, usize)> {
    zoo::visit(name, Card)
}
