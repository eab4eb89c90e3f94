//! Tests of the collectives that run in one process: `SingleProcess` and fake ranks
//! (dealing files to ranks, means, broadcasts per dtype, summed and fp16-compressed
//! gradients, tensors overwritten by rank 0, the byte codec). The MPI path with real
//! ranks is tested by `tests/distributed.rs`.

use std::path::PathBuf;

use dfdx::prelude::*;

use super::*;

fn paths(n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| PathBuf::from(format!("train{i}.tfrecord"))).collect()
}

#[test]
fn single_process_is_rank_zero_of_one_and_leaves_buffers_alone() {
    let c = SingleProcess;
    assert_eq!((c.rank(), c.world_size(), c.is_root()), (0, 1, true));
    let mut f = vec![1.5f32, -2.0];
    c.all_reduce_sum_f32(&mut f);
    c.all_reduce_mean_f32(&mut f);
    c.broadcast_f32(&mut f);
    assert_eq!(f, [1.5, -2.0]);
    let mut d = vec![3.25f64];
    c.all_reduce_sum_f64(&mut d);
    c.broadcast_f64(&mut d);
    assert_eq!(d, [3.25]);
    let mut bytes = vec![7u8, 8];
    c.broadcast_bytes(&mut bytes);
    assert_eq!(bytes, [7, 8]);
    assert_eq!(c.gather_bytes(&[1, 2, 3]), Some(vec![vec![1, 2, 3]]));
    assert_eq!(broadcast_u64(&c, 42), 42);
    c.barrier();
}

#[test]
fn files_are_dealt_round_robin() {
    let files = paths(5);
    assert_eq!(shard_files(&files, 0, 2), [files[0].clone(), files[2].clone(), files[4].clone()]);
    assert_eq!(shard_files(&files, 1, 2), [files[1].clone(), files[3].clone()]);
    assert_eq!(shard_files(&files, 0, 1), files);
    // Every file exactly once over the ranks.
    let mut all: Vec<PathBuf> = (0..3).flat_map(|r| shard_files(&files, r, 3)).collect();
    all.sort();
    assert_eq!(all, files);
}

/// A collective that pretends to be rank 1 of 3 whose peers hold the same values, to
/// check the arithmetic around the calls without MPI.
struct Replicated;
impl Collective for Replicated {
    fn rank(&self) -> usize {
        1
    }
    fn world_size(&self) -> usize {
        3
    }
    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v *= 3.0);
    }
    fn all_reduce_sum_f32_fp16(&self, values: &mut [f32]) {
        // Each of the three ranks sends its values as halves; the sum is sent back as one.
        values.iter_mut().for_each(|v| {
            *v = half::f16_to_f32(half::f32_to_f16(3.0 * half::f16_to_f32(half::f32_to_f16(*v))))
        });
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        values.iter_mut().for_each(|v| *v *= 3.0);
    }
    fn broadcast_f32(&self, values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v = 0.5);
    }
    fn broadcast_f64(&self, values: &mut [f64]) {
        values.iter_mut().for_each(|v| *v = 0.25);
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        *bytes = 9u64.to_le_bytes().to_vec();
    }
    fn gather_bytes(&self, _bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
        None
    }
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[test]
fn training_needs_a_file_per_rank() {
    let err = training_shard(&paths(2), &Replicated).unwrap_err();
    assert!(matches!(err, DistributedError::FewerFilesThanRanks { files: 2, ranks: 3 }), "{err}");
    assert!(err.to_string().contains("2 training files for 3 ranks"), "{err}");
    assert_eq!(training_shard(&paths(4), &Replicated).unwrap(), [PathBuf::from("train1.tfrecord")]);
}

#[test]
fn mean_divides_the_sum_by_the_world_size() {
    let mut v = vec![2.0f32, -4.0];
    Replicated.all_reduce_mean_f32(&mut v);
    assert_eq!(v, [2.0, -4.0]);
}

#[test]
fn broadcast_sends_each_dtype_through_its_own_call() {
    let mut f = vec![1.0f32; 3];
    broadcast_values(&Replicated, &mut f);
    assert_eq!(f, [0.5; 3]);
    let mut d = vec![1.0f64; 2];
    broadcast_values(&Replicated, &mut d);
    assert_eq!(d, [0.25; 2]);
    assert_eq!(broadcast_u64(&Replicated, 1), 9);
}

#[test]
fn gradients_are_summed_over_ranks() {
    let dev = Cpu::default();
    let model = dev.build_module::<dfdx::nn::builders::Linear<2, 1>, f32>();
    let x = dev.tensor([1.0f32, 2.0]);
    let loss = model.forward(x.traced(model.alloc_grads())).sum();
    let mut grads = loss.backward();
    let before = grads.get(&model.weight).as_vec();
    assert_eq!(before, [1.0, 2.0]);
    all_reduce_gradients(&Replicated, &model, &mut grads, Compression::None).unwrap();
    assert_eq!(grads.get(&model.weight).as_vec(), [3.0, 6.0]);
    assert_eq!(grads.get(&model.bias).as_vec(), [3.0]);
}

#[test]
fn compressed_gradients_go_through_halves() {
    let dev = Cpu::default();
    let model = dev.build_module::<dfdx::nn::builders::Linear<2, 1>, f32>();
    // Inputs whose gradients are not halves: 0.1 is 0x2e66 = 0.0999755859375 as a half,
    // and 3 x that is 0.2999267578125, which rounds to the half 0x34cc = 0.2998046875.
    let x = dev.tensor([0.1f32, 1.0]);
    let loss = model.forward(x.traced(model.alloc_grads())).sum();
    let mut grads = loss.backward();
    all_reduce_gradients(&Replicated, &model, &mut grads, Compression::Fp16).unwrap();
    let weight: Vec<f64> = grads.get(&model.weight).as_vec().into_iter().map(f64::from).collect();
    assert_eq!(weight, [0.2998046875, 3.0]);
    assert_eq!(half::f32_to_f16(weight[0] as f32), 0x34cc);
}

#[test]
fn tensors_are_overwritten_by_rank_zero() {
    let dev = Cpu::default();
    let mut model = dev.build_module::<dfdx::nn::builders::Linear<2, 1>, f32>();
    broadcast_tensors(&Replicated, &mut model).unwrap();
    assert_eq!(model.weight.as_vec(), [0.5, 0.5]);
    assert_eq!(model.bias.as_vec(), [0.5]);
}

#[test]
fn codec_round_trips_and_rejects_truncation() {
    let mut e = Encoder::new();
    e.u32s(&[3, 1]);
    e.pairs(&[(7, 0.25), (2, -1.5)]);
    e.str("video-1");
    let bytes = e.finish();
    let mut d = Decoder::new(&bytes, 4);
    assert_eq!(d.u32s().unwrap(), [3, 1]);
    assert_eq!(d.pairs().unwrap(), [(7, 0.25), (2, -1.5)]);
    assert_eq!(d.str().unwrap(), "video-1");
    assert!(d.is_empty());
    let mut cut = Decoder::new(&bytes[..bytes.len() - 1], 4);
    cut.u32s().unwrap();
    cut.pairs().unwrap();
    let err = cut.str().unwrap_err();
    assert!(err.to_string().contains("rank 4"), "{err}");
    // A length larger than the bytes that follow is an error, not a huge allocation.
    let mut huge = Decoder::new(&[255, 255, 255, 255], 0);
    assert!(huge.u32s().is_err());
}
