//! Input representations (DESIGN.md §4.2), mirroring `train/src/model/embed.rs`.

use super::Ctx;
use crate::onnx::Value;

/// Row of `embed.modality.weight` added to every text token.
const TEXT_MODALITY: i64 = 0;
/// Row of `embed.modality.weight` added to every image token ([I_CLS] included).
const IMAGE_MODALITY: i64 = 1;

/// `pixels [B, 3, H, W]` → `[B, 1 + N, D]`: Conv2d patches (row-major), [I_CLS] first, plus
/// `image_pos` and modality row 1. No image mask: inference never masks patches.
pub(super) fn image(ctx: &mut Ctx, pixels: &Value) -> Value {
    let d = ctx.config().hidden as i64;
    let p = ctx.config().patch_size as i64;
    let w = ctx.weight("embed.patch.weight");
    let b = ctx.weight("embed.patch.bias");
    let g = &mut ctx.g;
    let patches = g.conv(pixels, &w, &b, [p, p], [p, p]);
    let patches = g.reshape(&patches, &[0, d, -1]); // [B, D, N], row-major over the grid
    let patches = g.transpose(&patches, &[0, 2, 1]); // [B, N, D]
    let cls = ctx.weight("embed.image_cls");
    let batch = ctx.g.dim(pixels, 0);
    let tail = ctx.g.const_i64(&[1, d]);
    let cls_shape = ctx.g.concat(&[&batch, &tail], 0);
    let cls = ctx.g.expand(&cls, &cls_shape); // [B, 1, D]
    let x = ctx.g.concat(&[&cls, &patches], 1);
    let pos = ctx.weight("embed.image_pos");
    let x = ctx.g.add(&x, &pos);
    let modality = modality_row(ctx, IMAGE_MODALITY);
    ctx.g.add(&x, &modality)
}

/// `input_ids [B, L]` → `[B, L, D]`: word embeddings + `text_pos[:, :L]` + modality row 0.
/// `L` is the dynamic `seq` axis; a text longer than `max_text_len` fails at the Add (the
/// trained model asserts the same bound).
pub(super) fn text(ctx: &mut Ctx, input_ids: &Value) -> Value {
    let word = ctx.weight("embed.word.weight");
    let x = ctx.g.gather(&word, input_ids, 0);
    let text_pos = ctx.weight("embed.text_pos");
    let len = ctx.g.dim(input_ids, 1);
    let zero = ctx.g.const_i64(&[0]);
    let pos = ctx.g.slice(&text_pos, &zero, &len, &[1]);
    let x = ctx.g.add(&x, &pos);
    let modality = modality_row(ctx, TEXT_MODALITY);
    ctx.g.add(&x, &modality)
}

/// `embed.modality.weight[row]`, `[D]`.
fn modality_row(ctx: &mut Ctx, row: i64) -> Value {
    let table = ctx.weight("embed.modality.weight");
    let index = ctx.g.scalar_i64(row);
    ctx.g.gather(&table, &index, 0)
}
