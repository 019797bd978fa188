//! Counter-based randomness: every random quantity is a hash of what it depends on (the scenario
//! seed, a device or district, a time knot), so a value at a time does not depend on call history
//! and two processes playing the same scenario agree. SplitMix64's finaliser is the mixer: it passes
//! BigCrush as a counter-based generator and costs a few nanoseconds.

use std::f64::consts::PI;

/// A 64-bit name for a random field (FNV-1a of the string), so that fields keyed by the same
/// (seed, device, time) are independent.
pub const fn tag(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of two words (order matters).
#[inline]
pub fn hash2(a: u64, b: u64) -> u64 {
    mix(a ^ mix(b.wrapping_add(GOLDEN)))
}

#[inline]
pub fn hash3(a: u64, b: u64, c: u64) -> u64 {
    hash2(hash2(a, b), c)
}

/// Uniform in [0, 1).
#[inline]
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal (Box–Muller on the two halves of the hash), clipped to ±4 σ so that no
/// multiplicative field can run away.
#[inline]
pub fn gauss(h: u64) -> f64 {
    let u1 = ((h >> 32) as f64 + 0.5) * (1.0 / 4_294_967_296.0);
    let u2 = (h & 0xffff_ffff) as f64 * (1.0 / 4_294_967_296.0);
    ((-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()).clamp(-4.0, 4.0)
}

/// An approximately standard normal without transcendental functions: the Irwin–Hall sum of
/// four 16-bit uniforms, rescaled to unit variance. Bounded at ±2√3 (±3.46 σ), which suits
/// multiplicative noise fields; three times cheaper than [`gauss`].
#[inline]
pub fn gauss_fast(h: u64) -> f64 {
    let s = (h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48);
    ((s as f64 + 2.0) * (1.0 / 65_536.0) - 2.0) * 3f64.sqrt()
}

/// Smooth unit-variance noise in `x` (knots at the integers, an approximate normal at each knot,
/// smoothstep between them, rescaled so that the variance stays 1 between knots). With `x` in hours
/// over 3, say, the field decorrelates over about three hours.
#[inline]
pub fn smooth(key: u64, x: f64) -> f64 {
    let i = x.floor();
    let f = x - i;
    let k = i as i64 as u64;
    let a = gauss_fast(hash2(key, k));
    let b = gauss_fast(hash2(key, k.wrapping_add(1)));
    let s = f * f * (3.0 - 2.0 * f);
    ((1.0 - s) * a + s * b) / ((1.0 - s) * (1.0 - s) + s * s).sqrt()
}

/// A mean-one log-normal factor `exp(σz − σ²/2)`.
#[inline]
pub fn lognormal(sigma: f64, z: f64) -> f64 {
    (sigma * z - 0.5 * sigma * sigma).exp()
}

/// A short counter-based stream of random numbers for one draw (one lane's interval, ...).
#[derive(Debug, Clone)]
pub struct Stream(u64);

impl Stream {
    pub fn new(key: u64) -> Stream {
        Stream(mix(key))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    #[inline]
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    #[inline]
    pub fn gauss(&mut self) -> f64 {
        gauss(self.next_u64())
    }
}

/// A Poisson count of mean `lambda` from uniforms `u` (Knuth's product method below 30, a
/// rounded normal with variance `lambda × dispersion` above: counts of vehicles near capacity
/// are more regular than Poisson, `dispersion` < 1 says how much).
pub fn poisson(lambda: f64, dispersion: f64, mut u: impl FnMut() -> f64, z: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0.0;
    }
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut p = 1.0;
        let mut k = 0.0;
        loop {
            p *= u();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
    (lambda + (lambda * dispersion).sqrt() * z).round().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniforms_and_normals_have_the_right_moments() {
        let n = 200_000u64;
        let nf = n as f64;
        let su: f64 = (0..n).map(|i| unit(hash2(1, i))).sum();
        assert!((su / nf - 0.5).abs() < 0.005);
        for normal in [gauss, gauss_fast] {
            let (mut sg, mut sg2) = (0.0, 0.0);
            for i in 0..n {
                let g = normal(hash2(2, i));
                sg += g;
                sg2 += g * g;
            }
            assert!((sg / nf).abs() < 0.01);
            assert!((sg2 / nf - 1.0).abs() < 0.02);
        }
    }

    #[test]
    fn smooth_noise_keeps_unit_variance_and_is_continuous() {
        let (mut s, mut s2) = (0.0, 0.0);
        let n = 100_000;
        for i in 0..n {
            let v = smooth(7, i as f64 * 0.37);
            s += v;
            s2 += v * v;
        }
        let nf = n as f64;
        assert!((s / nf).abs() < 0.03, "mean {}", s / nf);
        assert!((s2 / nf - 1.0).abs() < 0.05, "var {}", s2 / nf);
        assert!((smooth(7, 3.0 - 1e-9) - smooth(7, 3.0)).abs() < 1e-6);
    }

    #[test]
    fn poisson_counts_have_mean_and_variance_lambda() {
        for lambda in [0.5f64, 4.0, 25.0, 200.0] {
            let mut st = Stream::new(lambda.to_bits());
            let n = 50_000;
            let (mut s, mut s2) = (0.0, 0.0);
            for _ in 0..n {
                let z = st.gauss();
                let k = poisson(lambda, 1.0, || st.unit(), z);
                s += k;
                s2 += k * k;
            }
            let mean = s / n as f64;
            let var = s2 / n as f64 - mean * mean;
            assert!(
                (mean / lambda - 1.0).abs() < 0.03,
                "λ {lambda}: mean {mean}"
            );
            assert!((var / lambda - 1.0).abs() < 0.08, "λ {lambda}: var {var}");
        }
    }
}
