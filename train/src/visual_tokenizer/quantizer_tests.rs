use tch::{Device, Kind, Tensor, nn};

use super::{Quantizer, QuantizerSettings, l2_normalize};

fn settings(codebook_size: i64, code_dim: i64) -> QuantizerSettings {
    QuantizerSettings {
        codebook_size,
        code_dim,
        decay: 0.9,
        commitment: 0.25,
        dead_after_steps: 3,
    }
}

fn quantizer(vs: &nn::VarStore, codebook_size: i64, code_dim: i64) -> Quantizer {
    Quantizer::new(&vs.root(), settings(codebook_size, code_dim))
}

fn rows(values: &[f32], dim: i64) -> Tensor {
    Tensor::from_slice(values).view([-1, dim])
}

fn ids(t: &Tensor) -> Vec<i64> {
    Vec::try_from(t.view([-1])).unwrap()
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    Tensor::cosine_similarity(a, b, -1, 1e-8).double_value(&[])
}

#[test]
fn quantizer_picks_the_nearest_code() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut q = quantizer(&vs, 3, 2);
    q.set_codebook(&rows(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0], 2));
    let z = l2_normalize(&rows(&[0.9, 0.1, 0.2, 0.8, -0.7, -0.3, 0.1, -1.0], 2));
    let out = q.forward(&z, false);
    // The last row, nearly straight down, has cosine 0.1 with code 0, -1 with code 1 and
    // -0.1 with code 2.
    assert_eq!(ids(&out.ids), [0, 1, 2, 0]);
    let forward = Vec::<f32>::try_from(out.straight_through.view([-1])).unwrap();
    assert_eq!(forward[..6], [1.0, 0.0, 0.0, 1.0, -1.0, 0.0]);
}

#[test]
fn straight_through_passes_the_gradient_unchanged() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut q = quantizer(&vs, 2, 2);
    q.set_codebook(&rows(&[1.0, 0.0, 0.0, 1.0], 2));
    let z = l2_normalize(&rows(&[0.8, 0.6], 2)).set_requires_grad(true);
    let weights = rows(&[2.0, -3.0], 2);
    let out = q.forward(&z, false);
    (&out.straight_through * &weights)
        .sum(Kind::Float)
        .backward();
    let grad = Vec::<f32>::try_from(z.grad().view([-1])).unwrap();
    assert_eq!(grad, [2.0, -3.0]);
}

#[test]
fn kmeans_init_takes_its_codes_from_the_data() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut q = quantizer(&vs, 3, 3);
    let centres = l2_normalize(&rows(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 3));
    // 3 tight clusters of 20 points each.
    let noise = Tensor::randn([60, 3], (Kind::Float, Device::Cpu)) * 0.05;
    let data = l2_normalize(&(centres.repeat([20, 1]) + noise));
    assert!(!q.is_initialized());
    q.forward(&data, true);
    assert!(q.is_initialized());
    let codes = q.codebook().shallow_clone();
    let mut matched = [false; 3];
    for i in 0..3 {
        let code = codes.get(i);
        let best = (0..3)
            .map(|c| (cosine(&code, &centres.get(c)), c))
            .fold((f64::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(best.0 > 0.99, "code {i} is not a cluster centre: {code:?}");
        matched[best.1 as usize] = true;
    }
    assert_eq!(matched, [true; 3], "every cluster gets a code");
}

#[test]
fn ema_update_moves_a_code_toward_its_assigned_vectors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut q = quantizer(&vs, 2, 2);
    q.set_codebook(&rows(&[1.0, 0.0, -1.0, 0.0], 2));
    let target = l2_normalize(&rows(&[1.0, 1.0], 2)).get(0);
    let before = cosine(&q.codebook().get(0), &target);
    let z = target.unsqueeze(0).repeat([8, 1]);
    q.forward(&z, true);
    let after = cosine(&q.codebook().get(0), &target);
    assert!(after > before + 0.05, "cos {before} -> {after}");
    let norm = q.codebook().get(0).norm().double_value(&[]);
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "codes stay on the sphere: {norm}"
    );
    // Code 1 was not chosen: it does not move.
    let still = cosine(&q.codebook().get(1), &rows(&[-1.0, 0.0], 2).get(0));
    assert!(still > 0.99999, "cos {still}");
}

#[test]
fn dead_codes_are_reseeded_from_current_vectors() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut q = quantizer(&vs, 4, 2);
    q.set_codebook(&rows(&[1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0], 2));
    let z = l2_normalize(&rows(&[1.0, 0.3, 1.0, 0.25, 1.0, 0.35], 2));
    for _ in 0..2 {
        q.forward(&z, true);
    }
    assert_eq!(
        Vec::<f32>::try_from(q.unused_steps()).unwrap(),
        [0.0, 2.0, 2.0, 2.0]
    );
    // Third step without use: codes 1..3 die and take rows of z.
    q.forward(&z, true);
    assert_eq!(Vec::<f32>::try_from(q.unused_steps()).unwrap(), [0.0; 4]);
    for i in 1..4 {
        let code = q.codebook().get(i);
        let best = (0..3)
            .map(|r| cosine(&code, &z.get(r)))
            .fold(f64::MIN, f64::max);
        assert!(best > 0.9999, "code {i} was not re-seeded from the data");
    }
}
