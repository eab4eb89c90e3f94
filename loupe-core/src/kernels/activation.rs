//! Elementwise functions on `f32` slices, in place: the recurrences' gate nonlinearities
//! (the logistic sigmoid `1 / (1 + e^-x)` and `tanh`) and the softmaxes' `e^x`, computed
//! sixteen (AVX-512) or eight at a time (AVX2 + FMA when the CPU has them,
//! detected at run time once, like the register tile; the same loop vectorised for the
//! build's target elsewhere), where the scalar `libm` calls they replace ran one value at
//! a time in `f64`.
//!
//! `e^x` is reduced to `2^n e^r` with `n = round(x / ln 2)` and `|r| <= ln 2 / 2`, `e^r` a
//! degree-7 Taylor polynomial (truncation under 6e-9 relative, below `f32`'s half ulp) and
//! `2^n` put straight into the exponent bits. `tanh` is `1 - 2 / (e^2|x| + 1)` with the
//! sign of `x`, except below `|x| = 0.4`, where that difference would cancel and its odd
//! Taylor series to `x^13` is used (truncation under 1e-8 relative). Both stay within two
//! `f32` ulps of the exact function over the whole line (`tests` below, against `f64`),
//! saturate to the limits at `+-inf` and keep a NaN a NaN.
#![allow(unsafe_code)]

use super::gemm::TileKind;

/// An elementwise function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `e^x`, saturating at `e^88` and `e^-87` (the softmaxes subtract their row's
    /// maximum first, so they only reach the lower end).
    Exp,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

/// `f` applied to each value, in place, with the instructions of the products' tile kind.
pub(crate) fn activate(f: Activation, values: &mut [f32]) {
    activate_on(TileKind::detect(), f, values)
}

/// [`activate`] with the instructions of `kind` (which this CPU must run: a kind from
/// `TileKind::available`).
fn activate_on(kind: TileKind, f: Activation, values: &mut [f32]) {
    match kind {
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx512 => {
            // SAFETY: `Avx512` comes from `TileKind::available` only when the CPU reported
            // AVX-512F, the feature `activate_avx512` is compiled for.
            unsafe { activate_avx512(f, values) }
        }
        #[cfg(target_arch = "x86_64")]
        TileKind::Avx2Fma => {
            // SAFETY: `Avx2Fma` comes from `TileKind::available` only when the CPU reported
            // AVX2 and FMA, the features `activate_avx2` is compiled for.
            unsafe { activate_avx2(f, values) }
        }
        _ => body(f, values),
    }
}

/// [`body`] inlined into a function compiled for AVX2 + FMA, so its loops run eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_avx2(f: Activation, values: &mut [f32]) {
    body(f, values)
}

/// [`body`] compiled for AVX-512F: sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn activate_avx512(f: Activation, values: &mut [f32]) {
    body(f, values)
}

#[inline(always)]
fn body(f: Activation, values: &mut [f32]) {
    match f {
        Activation::Exp => values.iter_mut().for_each(|v| *v = exp(*v)),
        Activation::Sigmoid => sigmoid_body(values),
        Activation::Tanh => tanh_body(values),
    }
}

#[inline(always)]
fn sigmoid_body(values: &mut [f32]) {
    for v in values {
        // Below -88 the exact value is a subnormal under 7e-39: 0, as at -inf.
        let y = 1.0 / (1.0 + exp(-*v));
        *v = if *v < -88.0 { 0.0 } else { y };
    }
}

#[inline(always)]
fn tanh_body(values: &mut [f32]) {
    for v in values {
        let x = *v;
        let a = x.abs();
        let a2 = a * a;
        // The odd series to x^13, on |x|.
        let series = a + a
            * a2
            * (-1.0 / 3.0
                + a2 * (2.0 / 15.0
                    + a2 * (-17.0 / 315.0
                        + a2 * (62.0 / 2835.0
                            + a2 * (-1382.0 / 155_925.0 + a2 * (21_844.0 / 6_081_075.0))))));
        let tail = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
        let t = if a < 0.4 { series } else { tail };
        *v = t.copysign(x);
    }
}

/// `e^x`, branch-free so that the loops above vectorise: arguments are clamped to where
/// `2^n` is a normal `f32` (the results past it are 0 or `f32::MAX`-sized, which the
/// sigmoid and `tanh` turn into their limits); a NaN stays one (`clamp` keeps it).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer, held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // `shifted`'s bits are those of ROUND plus n, so n + 127 shifted into the exponent.
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits((n_bits.wrapping_add(127) << 23) as u32);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/64 from -100 to 100, the small values `tanh` treats apart, and the ends.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (-6400..=6400).map(|i| i as f32 / 64.0).collect();
        xs.extend((-400..=400).map(|i| i as f32 * 1.01e-3));
        xs.extend([1e-30, -1e-30, 1e-7, -3e-6, 0.3999, 0.4001, -0.4001, 87.5, -88.5, 1e4, -1e4]);
        xs
    }

    /// Largest error against the exact function in `f64`, as `f32` ulps of the exact value
    /// (at least the ulp of the smallest normal, for results near 0).
    fn worst_ulps(f: fn(&mut [f32]), exact: fn(f64) -> f64) -> f64 {
        let xs = grid();
        let mut ys = xs.clone();
        f(&mut ys);
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let e = exact(f64::from(x));
                let ulp = (e.abs() * f64::from(f32::EPSILON)).max(f64::from(f32::MIN_POSITIVE));
                (f64::from(y) - e).abs() / ulp
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn sigmoid_is_within_two_ulps() {
        let worst = worst_ulps(|v| activate(Activation::Sigmoid, v), |x| 1.0 / (1.0 + (-x).exp()));
        eprintln!("worst: {worst:.2} ulps");
        assert!(worst <= 2.0, "{worst} ulps");
    }

    #[test]
    fn exp_is_within_two_ulps_where_it_is_a_normal_float() {
        // Past 88 it saturates (at e^88) and below -87 it stops at e^-87, where the exact
        // values overflow or fall to subnormals; the softmax never reaches either end.
        let worst = worst_ulps(|v| activate(Activation::Exp, v), |x| x.clamp(-87.0, 88.0).exp());
        eprintln!("worst: {worst:.2} ulps");
        assert!(worst <= 2.0, "{worst} ulps");
    }

    #[test]
    fn tanh_is_within_two_ulps() {
        let worst = worst_ulps(|v| activate(Activation::Tanh, v), f64::tanh);
        eprintln!("worst: {worst:.2} ulps");
        assert!(worst <= 2.0, "{worst} ulps");
    }

    #[test]
    fn limits_and_nan() {
        let mut v = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0];
        activate(Activation::Sigmoid, &mut v);
        assert_eq!(&v[..2], &[1.0, 0.0]);
        assert!(v[2].is_nan());
        assert_eq!(&v[3..], &[0.5, 0.5]);
        let mut v = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0];
        activate(Activation::Tanh, &mut v);
        assert_eq!(&v[..2], &[1.0, -1.0]);
        assert!(v[2].is_nan());
        assert_eq!(v[3].to_bits(), 0.0f32.to_bits());
        assert_eq!(v[4].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn every_kind_gives_the_portable_values_to_the_bit() {
        // Rust never fuses a multiply and an add unless told to, so the sixteen- and
        // eight-lane loops (where the CPU has them) compute exactly what the portable one
        // does.
        for kind in TileKind::available() {
            for f in [Activation::Exp, Activation::Sigmoid, Activation::Tanh] {
                let xs = grid();
                let (mut portable, mut simd) = (xs.clone(), xs.clone());
                body(f, &mut portable);
                activate_on(kind, f, &mut simd);
                for (x, (p, d)) in xs.iter().zip(portable.iter().zip(&simd)) {
                    assert_eq!(p.to_bits(), d.to_bits(), "{kind:?} {f:?}({x}): {p} against {d}");
                }
            }
        }
    }
}
