//! Hugging Face tensor names to the GGUF names the architectures load by, as llama.cpp's
//! converter maps them.

/// The GGUF name of a Hugging Face tensor of the architecture `arch` (its GGUF name), as
/// llama.cpp's converter maps it; `None` for tensors no architecture here reads.
pub(super) fn gguf_name(hf: &str, arch: &str) -> Option<String> {
    let (stem, suffix) = hf.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let global = match stem {
        "model.embed_tokens" => Some("token_embd"),
        "model.norm" => Some("output_norm"),
        "lm_head" => Some("output"),
        _ => None,
    };
    if let Some(name) = global {
        return Some(format!("{name}.{suffix}"));
    }
    let rest = stem.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    // With sandwich norms (Gemma) `post_attention_layernorm` follows the attention; in the
    // others it is the MLP's pre-norm.
    let sandwich = crate::arch::by_gguf_name(arch).is_some_and(|a| a.hf_sandwich_norms);
    let name = match part {
        "input_layernorm" => "attn_norm".to_string(),
        "post_attention_layernorm" if sandwich => "post_attention_norm".into(),
        "post_attention_layernorm" => "ffn_norm".into(),
        "pre_feedforward_layernorm" => "ffn_norm".into(),
        "post_feedforward_layernorm" => "post_ffw_norm".into(),
        "self_attn.q_proj" => "attn_q".into(),
        "self_attn.k_proj" => "attn_k".into(),
        "self_attn.v_proj" => "attn_v".into(),
        "self_attn.o_proj" => "attn_output".into(),
        "self_attn.qkv_proj" => "attn_qkv".into(),
        "self_attn.q_norm" => "attn_q_norm".into(),
        "self_attn.k_norm" => "attn_k_norm".into(),
        "mlp.gate_proj" => "ffn_gate".into(),
        "mlp.up_proj" => "ffn_up".into(),
        "mlp.down_proj" => "ffn_down".into(),
        "mlp.gate_up_proj" => "ffn_up".into(), // Phi-3: gate rows, then up rows.
        "block_sparse_moe.gate" | "mlp.gate" => "ffn_gate_inp".into(),
        "mlp.shared_expert.gate_proj" => "ffn_gate_shexp".into(),
        "mlp.shared_expert.up_proj" => "ffn_up_shexp".into(),
        "mlp.shared_expert.down_proj" => "ffn_down_shexp".into(),
        "mlp.shared_expert_gate" => "ffn_gate_inp_shexp".into(),
        _ => {
            // Experts, stored one by one: `blk.N.ffn_{gate,up,down}_exps.E`.
            let experts = part
                .strip_prefix("block_sparse_moe.experts.")
                .or_else(|| part.strip_prefix("mlp.experts."))?;
            let (expert, proj) = experts.split_once('.')?;
            let expert: usize = expert.parse().ok()?;
            let ffn = match proj {
                "w1" | "gate_proj" => "ffn_gate",
                "w2" | "down_proj" => "ffn_down",
                "w3" | "up_proj" => "ffn_up",
                _ => return None,
            };
            format!("{ffn}_exps.{expert}")
        }
    };
    Some(format!("blk.{layer}.{name}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_llama_cpp() {
        let cases = [
            (
                "model.embed_tokens.weight",
                "llama",
                Some("token_embd.weight"),
            ),
            ("lm_head.weight", "llama", Some("output.weight")),
            (
                "model.layers.3.self_attn.q_proj.bias",
                "qwen2",
                Some("blk.3.attn_q.bias"),
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "llama",
                Some("blk.0.ffn_norm.weight"),
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "gemma3",
                Some("blk.0.post_attention_norm.weight"),
            ),
            (
                "model.layers.1.mlp.gate_up_proj.weight",
                "phi3",
                Some("blk.1.ffn_up.weight"),
            ),
            (
                "model.layers.1.block_sparse_moe.experts.2.w3.weight",
                "mixtral",
                Some("blk.1.ffn_up_exps.2.weight"),
            ),
            (
                "model.layers.1.mlp.experts.0.down_proj.weight",
                "qwen2moe",
                Some("blk.1.ffn_down_exps.0.weight"),
            ),
            (
                "model.layers.1.mlp.shared_expert_gate.weight",
                "qwen2moe",
                Some("blk.1.ffn_gate_inp_shexp.weight"),
            ),
            (
                "model.layers.0.self_attn.rotary_emb.inv_freq",
                "llama",
                None,
            ),
            ("vision_tower.blocks.0.weight", "llama", None),
        ];
        for (hf, arch, gguf) in cases {
            assert_eq!(gguf_name(hf, arch).as_deref(), gguf, "{hf}");
        }
    }
}
