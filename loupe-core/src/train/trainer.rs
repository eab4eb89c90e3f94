//! One model, its optimizer and the step counters: the training step, generic over any
//! [`VideoModel`]. Prediction goes through [`Predictor`] ([`Trainer::predictor`]).

use dfdx::prelude::*;

use crate::device::try_tensor_from_f32;
use crate::distributed::{all_reduce_gradients, Collective, Compression, DistributedError, SingleProcess};
#[cfg(feature = "nccl")]
use crate::distributed::{gradients_reducible, nccl::Nccl};
use crate::infer::{PredictError, Predictor};
use crate::kernels;
use crate::metrics::{top_k, EvaluationMetrics};
use crate::model::VideoModel;
use crate::train::checkpoint::CheckpointError;
use crate::train::{
    try_cross_entropy_loss, try_masked_cross_entropy_loss, Adam, AdamConfig, LearningRateSchedule,
};
use crate::walk::each_tensor;

/// Optimisation settings of a [`Trainer`]. The default is the paper's: Adam with
/// per-variable clipping at 1, learning rate 2e-4 decayed by 0.8 every 4M videos, and
/// no classifier penalty (set [`classifier_l2`](Self::classifier_l2) to the model's,
/// [`ModelDescription::classifier_l2`](crate::model::ModelDescription::classifier_l2),
/// as `loupe train` does).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrainConfig {
    pub schedule: LearningRateSchedule,
    pub adam: AdamConfig,
    /// Coefficient of the classifier's L2 penalty in the loss (the model's own by default).
    pub classifier_l2: f64,
    /// How gradients travel in the all-reduce of a step across ranks (as they are by
    /// default; [`Compression::Fp16`] halves the bytes, on the `Cpu` path).
    pub compression: Compression,
}

/// What one training step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Step number after this step (1 for the first).
    pub step: u64,
    /// Cross-entropy plus the L2 term, averaged over the batch.
    pub loss: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Videos in the batch (over all ranks in a distributed step).
    pub batch: usize,
}

/// Why training or prediction stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("loss is {loss} at step {step}: training stopped (the last checkpoint is intact)")]
    NonFiniteLoss { step: u64, loss: f64 },
    #[error("{what}: expected {expected} values, got {got}")]
    Shape { what: &'static str, expected: usize, got: usize },
    #[error("device error: {0}")]
    Device(String),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Distributed(#[from] DistributedError),
}

/// A model being trained: parameters, Adam state, gradient buffers and counters.
pub struct Trainer<M, E: Dtype, D: Device<E>> {
    pub model: M,
    pub adam: Adam<M>,
    pub config: TrainConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// Training videos seen (drives the learning-rate schedule).
    pub examples_seen: u64,
    device: D,
    /// The gradient buffers, kept between steps.
    grads: Option<Gradients<E, D>>,
    /// Set when the last update left every parameter's gradient in `grads` zero (the
    /// fused Adam pass zeroes what it reads): the addresses and lengths of those gradient
    /// buffers, in the model's tensor order. The next step skips zeroing only if the
    /// model's parameters still map to exactly these buffers (see [`gradient_buffers`]).
    zeroed_grads: Option<Vec<(usize, usize)>>,
    /// The NCCL communicator that sums gradients on a GPU, once a step across ranks has
    /// connected it.
    #[cfg(feature = "nccl")]
    nccl: Option<Nccl>,
    /// Wall time of the last step's gradient all-reduce (`None` for one process).
    last_all_reduce: Option<std::time::Duration>,
}

/// The address and length of the gradient buffer in `grads` of every parameter of `model`
/// (with `do_gradient_update`, in the collection's order; a zero buffer is allocated for a
/// parameter that has none, as `try_zero_grads` would), on `Cpu` with `f32` or `f64` (the
/// only place the fused update zeroes them); `None` elsewhere or when a buffer is empty
/// (an empty buffer has no address of its own).
///
/// Two readings are equal only if every parameter maps to the same live buffer: a
/// parameter whose gradient was missing (a replaced model's new tensor ids) gets a new
/// allocation, which cannot share an address with the live buffers of the first reading.
fn gradient_buffers<E: Dtype, D: Device<E>, M: TensorCollection<E, D>>(
    model: &M,
    grads: &mut Gradients<E, D>,
) -> Result<Option<Vec<(usize, usize)>>, D::Err> {
    if !kernels::is_cpu::<f32, E, D>() && !kernels::is_cpu::<f64, E, D>() {
        return Ok(None);
    }
    let f32_buffers = kernels::is_cpu::<f32, E, D>();
    let mut found = Vec::new();
    each_tensor(model, &mut |_, trained, t| {
        if trained {
            found.push(if f32_buffers {
                let g = t.grad_f32(grads)?;
                (g.as_ptr() as usize, g.len())
            } else {
                let g = t.grad_f64(grads)?;
                (g.as_ptr() as usize, g.len())
            });
        }
        Ok(())
    })?;
    Ok(if found.iter().any(|&(_, len)| len == 0) { None } else { Some(found) })
}

fn device_error<Err: std::fmt::Debug>(e: Err) -> TrainError {
    TrainError::Device(format!("{e:?}"))
}

impl<M, E, D> Trainer<M, E, D>
where
    E: Dtype,
    D: Device<E>,
    M: VideoModel<E, D> + BuildModule<D, E> + Clone,
{
    /// A freshly initialised model on `device`.
    pub fn new(device: D, config: TrainConfig) -> Result<Self, TrainError> {
        let model = M::try_build(&device).map_err(device_error)?;
        Ok(Self::from_model(device, model, config))
    }

    /// Continues training `model` (e.g. loaded from a checkpoint).
    pub fn from_model(device: D, model: M, config: TrainConfig) -> Self {
        Trainer {
            model,
            adam: Adam::new(config.adam),
            config,
            step: 0,
            examples_seen: 0,
            device,
            grads: None,
            zeroed_grads: None,
            #[cfg(feature = "nccl")]
            nccl: None,
            last_all_reduce: None,
        }
    }

    /// The device the model lives on.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// Wall time of the last step's gradient all-reduce across ranks, timed around the
    /// reduction alone; `None` when the last step ran in one process. On a GPU NCCL only
    /// enqueues the reduction on the device's stream: the time excludes its completion.
    pub fn last_all_reduce(&self) -> Option<std::time::Duration> {
        self.last_all_reduce
    }

    /// Whether the last step's update left every kept parameter gradient zero (the fused
    /// CPU Adam pass zeroes the gradients it reads), so that the next step does not zero
    /// them again, provided the model's parameters are still the same tensors (checked).
    pub fn gradients_zeroed_by_update(&self) -> bool {
        self.grads.is_some() && self.zeroed_grads.is_some()
    }

    fn frames_tensor(
        &self,
        frames: &[f32],
        batch: usize,
    ) -> Result<Tensor<(usize, M::Frames, M::Features), E, D>, TrainError> {
        let expected = batch * M::FRAMES * M::FEATURES;
        if frames.len() != expected || batch == 0 {
            return Err(TrainError::Shape { what: "frames", expected, got: frames.len() });
        }
        try_tensor_from_f32(&self.device, frames, (batch, M::Frames::default(), M::Features::default()))
            .map_err(device_error)
    }

    /// `lengths`, when given, must hold one count per video.
    fn check_lengths(lengths: Option<&[usize]>, batch: usize) -> Result<(), TrainError> {
        match lengths {
            Some(l) if l.len() != batch => {
                Err(TrainError::Shape { what: "lengths", expected: batch, got: l.len() })
            }
            _ => Ok(()),
        }
    }

    /// One optimizer step on a batch: `frames` is `batch x FRAMES x FEATURES`, `labels`
    /// the multi-hot `batch x CLASSES` targets. Batch norm runs in training mode. Every
    /// frame counts as valid (see [`Self::train_step_lengths`]).
    pub fn train_step(&mut self, frames: &[f32], labels: &[f32]) -> Result<StepStats, TrainError> {
        self.step_on(frames, None, labels, None, &SingleProcess)
    }

    /// [`Self::train_step`] where only the first `lengths[b]` frames of video `b` are
    /// valid ([`VideoModel::try_forward_train_lengths`]; the batch's
    /// [`FrameBatch::lengths`](crate::data::FrameBatch::lengths)).
    pub fn train_step_lengths(
        &mut self,
        frames: &[f32],
        lengths: &[usize],
        labels: &[f32],
    ) -> Result<StepStats, TrainError> {
        self.step_on(frames, Some(lengths), labels, None, &SingleProcess)
    }

    /// [`Self::train_step_lengths`] where only the classes with `mask = 1` (a
    /// `batch x CLASSES` buffer like `labels`) enter the loss
    /// ([`try_masked_cross_entropy_loss`]): segment fine-tuning on rated classes.
    pub fn train_step_masked(
        &mut self,
        frames: &[f32],
        lengths: &[usize],
        labels: &[f32],
        mask: &[f32],
    ) -> Result<StepStats, TrainError> {
        if mask.len() != labels.len() {
            return Err(TrainError::Shape { what: "mask", expected: labels.len(), got: mask.len() });
        }
        self.step_on(frames, Some(lengths), labels, Some(mask), &SingleProcess)
    }

    /// [`Self::train_step_lengths`] as one rank of a data-parallel job: every rank of
    /// `collective` calls it with its own batch; the gradients are averaged over the
    /// union of the ranks' batches (weighted by batch size, so ranks may hold different
    /// numbers of videos) before clipping and Adam, so every rank makes the same update
    /// as one process stepping on all the batches together would. The returned loss and
    /// batch are those of the union; the schedule counts the union's videos.
    ///
    /// Batch norm normalises with each rank's own batch statistics (as the reference
    /// code's towers do), so models with batch norm follow one process only approximately.
    pub fn train_step_across(
        &mut self,
        frames: &[f32],
        lengths: &[usize],
        labels: &[f32],
        collective: &dyn Collective,
    ) -> Result<StepStats, TrainError> {
        self.step_on(frames, Some(lengths), labels, None, collective)
    }

    fn step_on(
        &mut self,
        frames: &[f32],
        lengths: Option<&[usize]>,
        labels: &[f32],
        mask: Option<&[f32]>,
        collective: &dyn Collective,
    ) -> Result<StepStats, TrainError> {
        let batch = labels.len() / M::CLASSES.max(1);
        if labels.len() != batch * M::CLASSES || batch == 0 {
            return Err(TrainError::Shape {
                what: "labels",
                expected: batch.max(1) * M::CLASSES,
                got: labels.len(),
            });
        }
        Self::check_lengths(lengths, batch)?;
        let x = self.frames_tensor(frames, batch)?;
        let y = try_tensor_from_f32(&self.device, labels, (batch, M::Classes::default()))
            .map_err(device_error)?;

        // The gradients start zero: freshly allocated (`try_alloc_grads` zeroes them), or
        // kept from the last step, where the fused Adam update already zeroed every
        // parameter's gradient if `zeroed_grads` is set and still describes this model's
        // parameters (the model is a public field and may have been replaced); otherwise
        // zeroed here. After `backward()` the kept gradients hold only the parameters'
        // (the leaves registered by `try_zero_grads`), so nothing else needs zeroing.
        let zeroed = self.zeroed_grads.take();
        let grads = match self.grads.take() {
            Some(mut g) => {
                let still_zero = match zeroed {
                    Some(zeroed) => {
                        gradient_buffers(&self.model, &mut g).map_err(device_error)? == Some(zeroed)
                    }
                    None => false,
                };
                if !still_zero {
                    self.model.try_zero_grads(&mut g).map_err(device_error)?;
                }
                g
            }
            None => self.model.try_alloc_grads().map_err(device_error)?,
        };
        let x = x.traced(grads);
        let p = match lengths {
            Some(lengths) => self.model.try_forward_train_lengths(x, lengths),
            None => self.model.try_forward_train(x),
        }
        .map_err(device_error)?;
        let l2 = E::from_f64(self.config.classifier_l2).unwrap();
        let penalty = self.model.try_l2_penalty().map_err(device_error)?.try_mul(l2).map_err(device_error)?;
        let loss = match mask {
            Some(mask) => {
                let mask = try_tensor_from_f32(&self.device, mask, (batch, M::Classes::default()))
                    .map_err(device_error)?;
                try_masked_cross_entropy_loss(p, y, mask)
            }
            None => try_cross_entropy_loss(p, y),
        };
        let loss = loss.map_err(device_error)?.try_add(penalty).map_err(device_error)?;
        let loss_value = loss.as_vec()[0].to_f64().unwrap_or(f64::NAN);
        let next_step = self.step + 1;
        let across = collective.world_size() > 1;
        // [videos, videos x mean loss] summed over ranks: the union's size and loss. Every
        // rank then sees the same loss, so a non-finite one stops all ranks at this step.
        let (loss_value, global_batch) = if across {
            let mut totals = [batch as f64, batch as f64 * loss_value];
            collective.all_reduce_sum_f64(&mut totals);
            (totals[1] / totals[0], totals[0] as usize)
        } else {
            (loss_value, batch)
        };
        if !loss_value.is_finite() {
            return Err(TrainError::NonFiniteLoss { step: next_step, loss: loss_value });
        }
        // Each rank's loss weighted by its share of the global batch: the sum of the ranks'
        // gradients (what the all-reduce computes, on the Cpu or by NCCL) is then the
        // gradient of the mean loss over the union of their batches.
        let loss = if across {
            let share = E::from_f64(batch as f64 / global_batch as f64).unwrap();
            loss.try_mul(share).map_err(device_error)?
        } else {
            loss
        };
        let mut grads = loss.try_backward().map_err(device_error)?;
        self.last_all_reduce = None;
        if across {
            let started = std::time::Instant::now();
            self.sum_gradients(collective, &mut grads)?;
            self.last_all_reduce = Some(started.elapsed());
        }
        let batch = global_batch;
        let learning_rate = self.update(grads)?;
        self.step = next_step;
        self.examples_seen += batch as u64;
        Ok(StepStats { step: next_step, loss: loss_value, learning_rate, batch })
    }

    /// The optimizer's update alone, applied once more to the gradients the last step
    /// left (zero by then on the fused CPU path, which moves the same bytes): `loupe
    /// bench`'s `optimizer` phase. The model and Adam's state move on; the gradients stay
    /// as the step left them, so the next step runs as after any step.
    pub(crate) fn repeat_update(&mut self) -> Result<(), TrainError> {
        let grads = match self.grads.take() {
            Some(grads) => grads,
            None => self.model.try_alloc_grads().map_err(device_error)?,
        };
        self.update(grads).map(|_| ())
    }

    /// Adam over `grads` at the schedule's learning rate (returned), keeping `grads` for
    /// the next step and noting whether the fused update left them zeroed.
    fn update(&mut self, mut grads: Gradients<E, D>) -> Result<f64, TrainError> {
        let learning_rate = self.config.schedule.learning_rate(self.examples_seen);
        let update = self
            .adam
            .update_and_zero_grads(&mut self.model, &mut grads, learning_rate)
            .map_err(device_error)?;
        self.zeroed_grads = if update.gradients_zeroed {
            gradient_buffers(&self.model, &mut grads).map_err(device_error)?
        } else {
            None
        };
        self.grads = Some(grads);
        Ok(learning_rate)
    }
}

impl<M, E, D> Trainer<M, E, D>
where
    E: Dtype,
    D: Device<E>,
    M: VideoModel<E, D> + BuildModule<D, E> + Clone,
{
    /// Replaces every parameter's gradient by its sum over the ranks of `collective`:
    /// where the buffers lie, on the `Cpu` ([`all_reduce_gradients`]), or on a GPU through
    /// NCCL (feature `nccl`; the communicator is connected at the first call, which every
    /// rank makes at the same step).
    fn sum_gradients(
        &mut self,
        collective: &dyn Collective,
        grads: &mut Gradients<E, D>,
    ) -> Result<(), TrainError> {
        #[cfg(feature = "nccl")]
        if !gradients_reducible::<E, D>() {
            if self.config.compression != Compression::None {
                return Err(DistributedError::Nccl(
                    "gradient compression (--allreduce-fp16) is for the MPI reduction of Cpu gradients; NCCL sums them as f32".into(),
                )
                .into());
            }
            let nccl = match self.nccl.take() {
                Some(nccl) => nccl,
                None => Nccl::for_gradients(collective, &self.model, grads)?,
            };
            let summed = nccl.all_reduce_gradients(&self.model, grads);
            self.nccl = Some(nccl);
            return Ok(summed?);
        }
        Ok(all_reduce_gradients(collective, &self.model, grads, self.config.compression)?)
    }
}

/// Evaluation of the model being trained goes through a [`Predictor`] of it.
impl<M, D> Trainer<M, f32, D>
where
    D: Device<f32>,
    M: VideoModel<f32, D> + Clone,
{
    /// A [`Predictor`] of the model as it is now. Cheap: the tensors share their buffers
    /// with the trainer's until the next update writes them (copy on write), so drop it
    /// before the next step.
    pub fn predictor(&self) -> Predictor<M, D> {
        Predictor::new(self.device.clone(), self.model.clone())
    }

    /// Class probabilities (`batch x CLASSES`, row-major) in evaluation mode, every frame
    /// valid ([`Predictor::predict`] takes the valid frames).
    pub fn predict(&self, frames: &[f32]) -> Result<Vec<f32>, TrainError> {
        Ok(self.predictor().forward(frames, None)?)
    }

    /// [`Self::predict`] where only the first `lengths[b]` frames of video `b` are valid.
    pub fn predict_lengths(&self, frames: &[f32], lengths: &[usize]) -> Result<Vec<f32>, TrainError> {
        Ok(self.predictor().predict(frames, lengths)?)
    }

    /// The `k` best `(class, score)` pairs of each video of a batch.
    pub fn predict_top_k(&self, frames: &[f32], k: usize) -> Result<Vec<Vec<(u32, f32)>>, TrainError> {
        Ok(self.predict(frames)?.chunks(M::CLASSES).map(|row| top_k(row, k)).collect())
    }

    /// Predicts a batch (every frame valid) and adds it to `metrics`; `labels[i]` are
    /// video i's true labels.
    pub fn evaluate_batch(
        &self,
        metrics: &mut EvaluationMetrics,
        frames: &[f32],
        labels: &[Vec<u32>],
    ) -> Result<(), TrainError> {
        let scores = self.predict(frames)?;
        if scores.len() != labels.len() * M::CLASSES {
            return Err(TrainError::Shape {
                what: "labels",
                expected: scores.len() / M::CLASSES,
                got: labels.len(),
            });
        }
        for (row, truth) in scores.chunks(M::CLASSES).zip(labels) {
            metrics.add_video(row, truth);
        }
        Ok(())
    }
}
