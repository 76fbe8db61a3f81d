//! Model tests on the tiny config, CPU.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor, nn};
use vlbeit_core::config::{ModelConfig, Variant};

use super::embed::Embeddings;
use super::mome::{Block, Route};
use super::*;

fn tiny() -> ModelConfig {
    ModelConfig::tiny()
}

fn model(config: &ModelConfig) -> (nn::VarStore, VlBeit) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VlBeit::new(&vs.root(), config);
    (vs, model)
}

fn pixels(config: &ModelConfig, batch: i64) -> Tensor {
    let s = config.image_size as i64;
    Tensor::randn([batch, 3, s, s], (Kind::Float, Device::Cpu))
}

/// Random ids in [5, V) (clear of the special tokens) with an all-ones mask.
fn text(config: &ModelConfig, batch: i64, len: i64) -> (Tensor, Tensor) {
    let ids = Tensor::randint_low(
        5,
        config.vocab_size as i64,
        [batch, len],
        (Kind::Int64, Device::Cpu),
    );
    let mask = Tensor::ones([batch, len], (Kind::Int64, Device::Cpu));
    (ids, mask)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// DESIGN.md §4.5, written out: the names and shapes the exporter relies on.
fn design_weight_shapes(c: &ModelConfig) -> BTreeMap<String, Vec<i64>> {
    let d = c.hidden as i64;
    let p = c.patch_size as i64;
    let f = c.mlp_hidden() as i64;
    let n = c.num_patches() as i64;
    let mut w = BTreeMap::new();
    let mut put = |name: String, shape: &[i64]| {
        w.insert(name, shape.to_vec());
    };
    put("embed.patch.weight".into(), &[d, 3, p, p]);
    put("embed.patch.bias".into(), &[d]);
    put("embed.image_cls".into(), &[1, 1, d]);
    put("embed.image_pos".into(), &[1, 1 + n, d]);
    put("embed.mask_token".into(), &[1, 1, d]);
    put("embed.word.weight".into(), &[c.vocab_size as i64, d]);
    put("embed.text_pos".into(), &[1, c.max_text_len as i64, d]);
    put("embed.modality.weight".into(), &[3, d]);
    for i in 0..c.layers {
        let b = format!("blocks.{i}");
        put(format!("{b}.norm1.weight"), &[d]);
        put(format!("{b}.norm1.bias"), &[d]);
        put(format!("{b}.attn.qkv.weight"), &[3 * d, d]);
        put(format!("{b}.attn.q_bias"), &[d]);
        put(format!("{b}.attn.v_bias"), &[d]);
        put(format!("{b}.attn.proj.weight"), &[d, d]);
        put(format!("{b}.attn.proj.bias"), &[d]);
        put(format!("{b}.gamma_1"), &[d]);
        put(format!("{b}.gamma_2"), &[d]);
        let experts: Vec<&str> = match c.variant {
            Variant::Mome if i >= c.vl_ffn_start => vec!["text", "image", "vl"],
            Variant::Mome => vec!["text", "image"],
            Variant::Standard => vec!["shared"],
        };
        for e in experts {
            put(format!("{b}.ffn.{e}.norm.weight"), &[d]);
            put(format!("{b}.ffn.{e}.norm.bias"), &[d]);
            put(format!("{b}.ffn.{e}.fc1.weight"), &[f, d]);
            put(format!("{b}.ffn.{e}.fc1.bias"), &[f]);
            put(format!("{b}.ffn.{e}.fc2.weight"), &[d, f]);
            put(format!("{b}.ffn.{e}.fc2.bias"), &[d]);
        }
    }
    put("norm.weight".into(), &[d]);
    put("norm.bias".into(), &[d]);
    put("heads.mlm.dense.weight".into(), &[d, d]);
    put("heads.mlm.dense.bias".into(), &[d]);
    put("heads.mlm.norm.weight".into(), &[d]);
    put("heads.mlm.norm.bias".into(), &[d]);
    put("heads.mlm.decoder.weight".into(), &[c.vocab_size as i64, d]);
    put("heads.mlm.decoder.bias".into(), &[c.vocab_size as i64]);
    put("heads.mim.weight".into(), &[c.visual_vocab as i64, d]);
    put("heads.mim.bias".into(), &[c.visual_vocab as i64]);
    put(
        "heads.itc.image_proj.weight".into(),
        &[c.embed_dim as i64, d],
    );
    put(
        "heads.itc.text_proj.weight".into(),
        &[c.embed_dim as i64, d],
    );
    put("heads.itc.logit_scale".into(), &[]);
    put("heads.pooler.dense.weight".into(), &[d, d]);
    put("heads.pooler.dense.bias".into(), &[d]);
    put("heads.itm.weight".into(), &[2, d]);
    put("heads.itm.bias".into(), &[2]);
    w
}

fn model_weight_shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(name, t)| (name, t.size()))
        .collect()
}

#[test]
fn every_mode_and_head_has_the_documented_shapes() {
    let c = tiny();
    let (_vs, m) = model(&c);
    let (d, n) = (c.hidden as i64, c.num_patches() as i64);
    tch::no_grad(|| {
        for batch in [1, 3] {
            let px = pixels(&c, batch);
            let image = m.forward_image(&px, None, false);
            assert_eq!(image.size(), [batch, 1 + n, d]);
            let layers = m.forward_image_layers(&px, None, false);
            assert_eq!(layers.len(), c.layers);
            assert!(layers.iter().all(|l| l.size() == [batch, 1 + n, d]));
            assert_eq!(
                m.heads().image_embeds(&image).size(),
                [batch, c.embed_dim as i64]
            );
            let patches = image.narrow(1, 1, n);
            assert_eq!(
                m.heads().mim(&patches).size(),
                [batch, n, c.visual_vocab as i64]
            );
            for len in [3, 7, c.max_text_len as i64] {
                let (ids, mask) = text(&c, batch, len);
                let t = m.forward_text(&ids, &mask, false);
                assert_eq!(t.size(), [batch, len, d]);
                assert_eq!(m.heads().mlm(&t).size(), [batch, len, c.vocab_size as i64]);
                let e = m.heads().text_embeds(&t);
                assert_eq!(e.size(), [batch, c.embed_dim as i64]);
                let norms = e.norm_scalaropt_dim(2.0, [-1i64], false);
                assert!(max_abs_diff(&norms, &norms.ones_like()) < 1e-5);
                let fused = m.forward_fusion(&ids, &mask, &px, None, false);
                assert_eq!(fused.size(), [batch, len + 1 + n, d]);
                let pooled = m.heads().pooled(&fused);
                assert_eq!(pooled.size(), [batch, d]);
                assert_eq!(m.heads().itm(&pooled).size(), [batch, 2]);
            }
        }
    });
}

#[test]
fn mome_weight_names_match_design() {
    let c = tiny();
    let (vs, _m) = model(&c);
    assert_eq!(model_weight_shapes(&vs), design_weight_shapes(&c));
    let vl: Vec<String> = vs
        .variables()
        .into_keys()
        .filter(|n| n.contains(".ffn.vl."))
        .collect();
    assert!(!vl.is_empty());
    let start = format!("blocks.{}.", c.vl_ffn_start);
    assert!(vl.iter().all(|n| n.starts_with(&start)), "{vl:?}");
}

#[test]
fn standard_weight_names_match_design() {
    let c = ModelConfig {
        variant: Variant::Standard,
        ..tiny()
    };
    let (vs, m) = model(&c);
    assert_eq!(model_weight_shapes(&vs), design_weight_shapes(&c));
    let (ids, mask) = text(&c, 2, 5);
    let fused = tch::no_grad(|| m.forward_fusion(&ids, &mask, &pixels(&c, 2), None, false));
    assert_eq!(fused.size()[1], 5 + 1 + c.num_patches() as i64);
}

#[test]
fn padding_does_not_change_real_token_states() {
    let c = tiny();
    let (_vs, m) = model(&c);
    let (ids, mask) = text(&c, 2, 6);
    let padded_ids = Tensor::cat(
        &[&ids, &Tensor::zeros([2, 5], (Kind::Int64, Device::Cpu))],
        1,
    );
    let padded_mask = Tensor::cat(
        &[&mask, &Tensor::zeros([2, 5], (Kind::Int64, Device::Cpu))],
        1,
    );
    let px = pixels(&c, 2);
    tch::no_grad(|| {
        let plain = m.forward_text(&ids, &mask, false);
        let padded = m.forward_text(&padded_ids, &padded_mask, false);
        assert!(max_abs_diff(&plain, &padded.narrow(1, 0, 6)) < 1e-5);

        let plain = m.forward_fusion(&ids, &mask, &px, None, false);
        let padded = m.forward_fusion(&padded_ids, &padded_mask, &px, None, false);
        let image_len = 1 + c.num_patches() as i64;
        assert!(max_abs_diff(&plain.narrow(1, 0, 6), &padded.narrow(1, 0, 6)) < 1e-5);
        assert!(
            max_abs_diff(
                &plain.narrow(1, 6, image_len),
                &padded.narrow(1, 11, image_len)
            ) < 1e-5
        );
    });
}

/// Adds 1 to the output bias of `expert` in a lone block, so its tokens' outputs move.
fn perturb(vs: &nn::VarStore, name: &str) {
    let mut t = vs.variables()[name].shallow_clone();
    tch::no_grad(|| {
        let _ = t.g_add_scalar_(1.0);
    });
}

/// Which tokens of a block's output change when one expert's weights change.
fn changed_tokens(layer: usize, route: Route, expert: &str, x: &Tensor) -> Vec<bool> {
    let c = tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let block = Block::new(&vs.root(), &c, layer);
    tch::no_grad(|| {
        let before = block.forward(x, None, route, false);
        perturb(&vs, &format!("ffn.{expert}.fc2.bias"));
        let after = block.forward(x, None, route, false);
        let per_token = (after - before).abs().amax([0i64, 2].as_slice(), false);
        Vec::<f32>::try_from(per_token)
            .unwrap()
            .into_iter()
            .map(|v| v > 0.0)
            .collect()
    })
}

#[test]
fn mome_routes_each_token_to_its_modality_expert() {
    let c = tiny();
    let text_len = 5;
    let seq = text_len + 1 + c.num_patches() as i64;
    let x = Tensor::randn([2, seq, c.hidden as i64], (Kind::Float, Device::Cpu));
    let fusion = Route::Fusion { text_len };
    let is_text: Vec<bool> = (0..seq).map(|i| i < text_len).collect();
    let is_image: Vec<bool> = is_text.iter().map(|t| !t).collect();

    // Below vl_ffn_start: text tokens to the text expert, image tokens to the image expert.
    assert_eq!(changed_tokens(0, fusion, "image", &x), is_image);
    assert_eq!(changed_tokens(0, fusion, "text", &x), is_text);
    // From vl_ffn_start: the VL expert takes every token, the others none.
    let top = c.vl_ffn_start;
    assert!(changed_tokens(top, fusion, "vl", &x).iter().all(|&c| c));
    assert!(changed_tokens(top, fusion, "text", &x).iter().all(|&c| !c));
    assert!(changed_tokens(top, fusion, "image", &x).iter().all(|&c| !c));
    // Single-modality modes use their own expert, also in the top layers.
    assert!(
        changed_tokens(top, Route::Text, "image", &x)
            .iter()
            .all(|&c| !c)
    );
    assert!(
        changed_tokens(top, Route::Text, "text", &x)
            .iter()
            .all(|&c| c)
    );
    assert!(
        changed_tokens(top, Route::Image, "vl", &x)
            .iter()
            .all(|&c| !c)
    );
    assert!(
        changed_tokens(top, Route::Image, "image", &x)
            .iter()
            .all(|&c| c)
    );
}

#[test]
fn image_mask_replaces_exactly_the_masked_patches() {
    let c = tiny();
    let vs = nn::VarStore::new(Device::Cpu);
    let embed = Embeddings::new(&vs.root(), &c);
    let n = c.num_patches() as i64;
    let px = pixels(&c, 2);
    let mask = Tensor::rand([2, n], (Kind::Float, Device::Cpu)).lt(0.4);
    let vars = vs.variables();
    let masked_value =
        (&vars["mask_token"] + &vars["image_pos"] + vars["modality.weight"].get(1)).squeeze_dim(0); // [1 + N, D]
    tch::no_grad(|| {
        let plain = embed.image(&px, None);
        let masked = embed.image(&px, Some(&mask));
        let m: Vec<bool> = Vec::try_from(mask.flatten(0, -1)).unwrap();
        for (k, &is_masked) in m.iter().enumerate() {
            let (b, j) = ((k as i64) / n, (k as i64) % n + 1);
            let got = masked.get(b).get(j);
            if is_masked {
                assert!(max_abs_diff(&got, &masked_value.get(j)) < 1e-6);
                assert!(max_abs_diff(&got, &plain.get(b).get(j)) > 1e-3);
            } else {
                assert_eq!(max_abs_diff(&got, &plain.get(b).get(j)), 0.0);
            }
        }
        // [I_CLS] is never masked.
        assert_eq!(
            max_abs_diff(&masked.narrow(1, 0, 1), &plain.narrow(1, 0, 1)),
            0.0
        );
    });
}

#[test]
fn drop_path_acts_in_training_only() {
    let c = tiny();
    let (_vs, m) = model(&c);
    let px = pixels(&c, 4);
    tch::no_grad(|| {
        let eval_a = m.forward_image(&px, None, false);
        let eval_b = m.forward_image(&px, None, false);
        assert_eq!(max_abs_diff(&eval_a, &eval_b), 0.0);
        let train = m.forward_image(&px, None, true);
        assert!(max_abs_diff(&eval_a, &train) > 1e-4);
    });
    let no_drop = ModelConfig {
        drop_path: 0.0,
        ..tiny()
    };
    let (_vs, m) = model(&no_drop);
    tch::no_grad(|| {
        let eval = m.forward_image(&px, None, false);
        assert_eq!(max_abs_diff(&eval, &m.forward_image(&px, None, true)), 0.0);
    });
}

fn std_of(t: &Tensor) -> f64 {
    t.std(true).double_value(&[])
}

#[test]
fn initialization_follows_beit() {
    let c = tiny();
    let (vs, _m) = model(&c);
    let v = vs.variables();
    // Normal(0, 0.02) truncated at ±2σ has std 0.02 · 0.8796.
    let trunc_std = 0.02 * 0.879_62;
    let qkv = &v["blocks.0.attn.qkv.weight"];
    assert!(
        (std_of(qkv) - trunc_std).abs() < 0.02 * trunc_std,
        "{}",
        std_of(qkv)
    );
    assert!(qkv.abs().max().double_value(&[]) <= 0.04 + 1e-7);
    assert!((std_of(&v["embed.word.weight"]) - trunc_std).abs() < 0.02 * trunc_std);
    for l in 1..=c.layers {
        let expected = trunc_std / (2.0 * l as f64).sqrt();
        for name in [
            format!("blocks.{}.attn.proj.weight", l - 1),
            format!("blocks.{}.ffn.text.fc2.weight", l - 1),
            format!("blocks.{}.ffn.image.fc2.weight", l - 1),
        ] {
            let got = std_of(&v[&name]);
            assert!(
                (got - expected).abs() < 0.05 * expected,
                "{name}: {got} vs {expected}"
            );
        }
        // fc1 is not rescaled.
        let fc1 = std_of(&v[&format!("blocks.{}.ffn.text.fc1.weight", l - 1)]);
        assert!((fc1 - trunc_std).abs() < 0.03 * trunc_std);
    }
    let zero = |n: &str| v[n].abs().max().double_value(&[]) == 0.0;
    assert!(
        zero("blocks.0.attn.q_bias") && zero("blocks.1.ffn.text.fc2.bias") && zero("norm.bias")
    );
    assert_eq!(v["norm.weight"].min().double_value(&[]), 1.0);
    assert!((v["blocks.2.gamma_1"].mean(Kind::Float).double_value(&[]) - 0.1).abs() < 1e-7);
    let scale = v["heads.itc.logit_scale"].double_value(&[]);
    assert!((scale - (1.0f64 / 0.07).ln()).abs() < 1e-6);
}

#[test]
fn saved_weights_load_back_to_identical_outputs() {
    let c = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (vs_a, a) = model(&c);
    save_weights(&vs_a, &path).unwrap();
    let (mut vs_b, b) = model(&c);
    load_weights(&mut vs_b, &path, &c).unwrap();
    let (ids, mask) = text(&c, 2, 7);
    let px = pixels(&c, 2);
    tch::no_grad(|| {
        let fa = a.forward_fusion(&ids, &mask, &px, None, false);
        let fb = b.forward_fusion(&ids, &mask, &px, None, false);
        assert_eq!(max_abs_diff(&fa, &fb), 0.0);
        let ia = a.heads().image_embeds(&a.forward_image(&px, None, false));
        let ib = b.heads().image_embeds(&b.forward_image(&px, None, false));
        assert_eq!(max_abs_diff(&ia, &ib), 0.0);
    });
    assert!(matches!(
        save_weights(&vs_a, &dir.path().join("model.pt")),
        Err(WeightsError::NotSafetensors { .. })
    ));
}

#[test]
fn loading_mismatched_weights_names_every_bad_tensor() {
    let c = tiny();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (vs, _m) = model(&c);
    let mut tensors: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    tensors.remove("blocks.1.attn.q_bias");
    tensors.insert(
        "heads.mim.weight".into(),
        Tensor::zeros([7, 128], (Kind::Float, Device::Cpu)),
    );
    tensors.insert(
        "heads.extra".into(),
        Tensor::zeros([2], (Kind::Float, Device::Cpu)),
    );
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    Tensor::write_safetensors(&list, &path).unwrap();

    let (mut target, _m) = model(&c);
    let err = load_weights(&mut target, &path, &c).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("missing tensors: blocks.1.attn.q_bias"),
        "{msg}"
    );
    assert!(msg.contains("unexpected tensors: heads.extra"), "{msg}");
    assert!(
        msg.contains("heads.mim.weight has shape [7, 128], expected [512, 128]"),
        "{msg}"
    );
    let WeightsError::Mismatch { wrong_shape, .. } = err else {
        panic!("not a mismatch: {err}");
    };
    assert_eq!(wrong_shape.len(), 1);
}

#[test]
fn position_interpolation_keeps_cls_and_resamples_the_grid() {
    let c = tiny();
    let g = c.grid() as i64;
    let d = c.hidden as i64;
    let pos = Tensor::randn([1, 1 + g * g, d], (Kind::Float, Device::Cpu));
    assert_eq!(
        max_abs_diff(&interpolate_image_pos(&pos, g as usize), &pos),
        0.0
    );
    let big = interpolate_image_pos(&pos, 12);
    assert_eq!(big.size(), [1, 1 + 144, d]);
    assert_eq!(
        max_abs_diff(&big.narrow(1, 0, 1), &pos.narrow(1, 0, 1)),
        0.0
    );
    // Bicubic resampling reproduces a constant grid.
    let flat = Tensor::ones([1, 1 + g * g, d], (Kind::Float, Device::Cpu)) * 0.5;
    let up = interpolate_image_pos(&flat, 12);
    assert!(max_abs_diff(&up, &up.ones_like().g_mul_scalar(0.5)) < 1e-6);

    // A checkpoint at 64 px loads into a 96 px model through the interpolation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (vs, _m) = model(&c);
    save_weights(&vs, &path).unwrap();
    let big_config = ModelConfig {
        image_size: 96,
        ..tiny()
    };
    let (mut big_vs, big_model) = model(&big_config);
    load_weights(&mut big_vs, &path, &big_config).unwrap();
    let expected = interpolate_image_pos(&vs.variables()["embed.image_pos"], 12);
    assert_eq!(
        max_abs_diff(&big_vs.variables()["embed.image_pos"], &expected),
        0.0
    );
    let states = tch::no_grad(|| big_model.forward_image(&pixels(&big_config, 1), None, false));
    assert_eq!(states.size(), [1, 1 + 144, d]);
}

#[test]
fn parameter_count_matches_design_and_base_is_reported() {
    let count = |c: &ModelConfig| -> usize {
        design_weight_shapes(c)
            .values()
            .map(|s| s.iter().product::<i64>() as usize)
            .sum()
    };
    for variant in [Variant::Mome, Variant::Standard] {
        let c = ModelConfig { variant, ..tiny() };
        let (vs, _m) = model(&c);
        assert_eq!(parameter_count(&vs), count(&c));
    }
    let base = ModelConfig::base();
    let backbone: usize = design_weight_shapes(&base)
        .iter()
        .filter(|(n, _)| !n.starts_with("heads."))
        .map(|(_, s)| s.iter().product::<i64>() as usize)
        .sum();
    println!(
        "VL-BEiT base parameters: {} total, {} backbone, {} heads",
        count(&base),
        backbone,
        count(&base) - backbone
    );
    assert!((200_000_000..300_000_000).contains(&count(&base)));
}
