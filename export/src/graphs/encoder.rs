//! The three encoder modes as three graphs, mirroring `train/src/model/encoder.rs`:
//! embeddings → MoME blocks → the final shared LayerNorm → heads.

use super::mome::{Route, block, key_mask};
use super::{Ctx, embed, heads};
use crate::onnx::proto::GraphProto;
use crate::onnx::{Dim, ElemType, Value};

/// Image mode: `pixel_values f32 [batch, 3, H, W]` → `image_embeds [batch, E]` (L2-normalized
/// [I_CLS] projection), `image_states [batch, 1 + N, D]` and, with a classification head,
/// `class_logits [batch, C]`.
pub(crate) fn image_encoder(mut ctx: Ctx) -> GraphProto {
    let c = ctx.config().clone();
    let pixels = pixel_input(&mut ctx);
    let mut x = embed::image(&mut ctx, &pixels);
    for layer in 0..c.layers {
        x = block(&mut ctx, layer, &x, None, &Route::Image);
    }
    let states = ctx.layer_norm(&x, "norm");
    let embeds = heads::image_embeds(&mut ctx, &states);
    let states = ctx.cast_f32(&states);
    let (batch, d, e) = (Dim::dynamic("batch"), c.hidden as i64, c.embed_dim as i64);
    let tokens = 1 + c.num_patches() as i64;
    let classify = ctx
        .classes()
        .map(|classes| (heads::class_logits(&mut ctx, &states), classes as i64));
    let g = &mut ctx.g;
    g.output(
        &embeds,
        "image_embeds",
        ElemType::F32,
        &[batch.clone(), e.into()],
    );
    g.output(
        &states,
        "image_states",
        ElemType::F32,
        &[batch.clone(), tokens.into(), d.into()],
    );
    if let Some((logits, classes)) = classify {
        let logits = ctx.cast_f32(&logits);
        let dims = [batch, classes.into()];
        ctx.g.output(&logits, "class_logits", ElemType::F32, &dims);
    }
    ctx.g.finish()
}

/// Text mode: `input_ids, attention_mask i64 [batch, seq]` → `text_embeds [batch, E]`.
pub(crate) fn text_encoder(mut ctx: Ctx) -> GraphProto {
    let c = ctx.config().clone();
    let (input_ids, attention_mask) = text_inputs(&mut ctx);
    let mut x = embed::text(&mut ctx, &input_ids);
    let mask = key_mask(&mut ctx, &attention_mask, 0);
    for layer in 0..c.layers {
        x = block(&mut ctx, layer, &x, Some(&mask), &Route::Text);
    }
    let states = ctx.layer_norm(&x, "norm");
    let embeds = heads::text_embeds(&mut ctx, &states);
    let dims = [Dim::dynamic("batch"), (c.embed_dim as i64).into()];
    ctx.g.output(&embeds, "text_embeds", ElemType::F32, &dims);
    ctx.g.finish()
}

/// Fusion mode: one pass over `concat(text, image)`, text first, padded text keys masked →
/// `pooled [batch, D]` (tanh pooler on [T_CLS]), `itm_logits [batch, 2]` and, with a VQA head,
/// `vqa_logits [batch, A]` (from the same pooled output).
pub(crate) fn fusion_encoder(mut ctx: Ctx) -> GraphProto {
    let c = ctx.config().clone();
    let (input_ids, attention_mask) = text_inputs(&mut ctx);
    let pixels = pixel_input(&mut ctx);
    let text = embed::text(&mut ctx, &input_ids);
    let image = embed::image(&mut ctx, &pixels);
    let image_len = 1 + c.num_patches() as i64;
    let mask = key_mask(&mut ctx, &attention_mask, image_len);
    let text_len = ctx.g.dim(&input_ids, 1);
    let route = Route::Fusion { text_len };
    let mut x = ctx.g.concat(&[&text, &image], 1);
    for layer in 0..c.layers {
        x = block(&mut ctx, layer, &x, Some(&mask), &route);
    }
    let states = ctx.layer_norm(&x, "norm");
    let pooled = heads::pooled(&mut ctx, &states);
    let itm = heads::itm(&mut ctx, &pooled);
    let vqa = ctx
        .vqa_answers()
        .map(|answers| (heads::vqa_logits(&mut ctx, &pooled), answers as i64));
    let pooled = ctx.cast_f32(&pooled);
    let itm = ctx.cast_f32(&itm);
    let batch = Dim::dynamic("batch");
    let d = c.hidden as i64;
    ctx.g
        .output(&pooled, "pooled", ElemType::F32, &[batch.clone(), d.into()]);
    ctx.g.output(
        &itm,
        "itm_logits",
        ElemType::F32,
        &[batch.clone(), 2.into()],
    );
    if let Some((logits, answers)) = vqa {
        let logits = ctx.cast_f32(&logits);
        let dims = [batch, answers.into()];
        ctx.g.output(&logits, "vqa_logits", ElemType::F32, &dims);
    }
    ctx.g.finish()
}

fn pixel_input(ctx: &mut Ctx) -> Value {
    let c = ctx.config();
    let (ch, size) = (c.channels as i64, c.image_size as i64);
    let dims = [Dim::dynamic("batch"), ch.into(), size.into(), size.into()];
    let pixels = ctx.g.input("pixel_values", ElemType::F32, &dims);
    ctx.cast_compute(&pixels)
}

fn text_inputs(ctx: &mut Ctx) -> (Value, Value) {
    let dims = [Dim::dynamic("batch"), Dim::dynamic("seq")];
    let ids = ctx.g.input("input_ids", ElemType::I64, &dims);
    let mask = ctx.g.input("attention_mask", ElemType::I64, &dims);
    (ids, mask)
}
