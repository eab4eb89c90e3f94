//! Paper-size LSTM (B = 8, S = 150, F = 1152, H = 1024) and GRU (H = 1200) forward and
//! forward + backward, timed on loupe's `Cpu` path and on the composed dfdx path
//! (`LOUPE_RECURRENT=lstm` or `gru` times one of them only). Prints wall time and the
//! process's CPU time (all threads; steadier than wall time on a shared machine).
//! Seconds per pass and a few GB: a probe, not a test.
//!
//! `cargo bench --bench recurrent_paper_size`

use dfdx::prelude::*;
use loupe::bench::process_cpu_ms;
use loupe::nn::builder;

fn main() {
    let dev = loupe::device::cpu_seeded(7);
    let x: Tensor<(usize, Const<150>, Const<1152>), f32, _> = dev.sample_normal_like(&(8, Const, Const));
    let only = std::env::var("LOUPE_RECURRENT").unwrap_or_default();
    let time = |what: &str, f: &dyn Fn()| {
        let (wall, cpu) = (std::time::Instant::now(), process_cpu_ms());
        f();
        let cpu = process_cpu_ms().zip(cpu).map(|(b, a)| b - a);
        println!("{what}: wall {:.0} ms, cpu {cpu:?} ms", wall.elapsed().as_secs_f64() * 1e3);
    };
    // What one layer's forward recurrent products alone cost: 150 (8, 1024) x (1024, 4096).
    let h: Tensor<(usize, Const<1024>), f32, _> = dev.sample_normal_like(&(8, Const));
    let u: Tensor<(Const<1024>, usize), f32, _> = dev.sample_normal_like(&(Const, 4096));
    time("150 matmuls (8, 1024) x (1024, 4096)", &|| {
        for _ in 0..150 {
            drop(h.clone().matmul(u.clone()));
        }
    });
    for composed in [false, true] {
        loupe::kernels::set_fused(!composed);
        let path = if composed { "composed" } else { "cpu" };
        if only.is_empty() || only == "lstm" {
            let lstm = dev.build_module::<builder::LstmPooling<1152, 1024, 4096>, f32>();
            for _ in 0..2 {
                time(&format!("LSTM 2x1024, B=8 S=150, {path}, forward"), &|| drop(lstm.forward(x.clone())));
                time(&format!("LSTM 2x1024, B=8 S=150, {path}, forward+backward"), &|| {
                    drop(lstm.forward(x.clone().traced(lstm.alloc_grads())).sum().backward())
                });
            }
        }
        if only.is_empty() || only == "gru" {
            let gru = dev.build_module::<builder::GruPooling<1152, 1200, 2400>, f32>();
            for _ in 0..2 {
                time(&format!("GRU 2x1200, B=8 S=150, {path}, forward+backward"), &|| {
                    drop(gru.forward(x.clone().traced(gru.alloc_grads())).sum().backward())
                });
            }
        }
    }
}
