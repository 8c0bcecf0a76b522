#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints and their reference outputs.

For each architecture Symphony loads from safetensors, this script builds a model of a few
hundred thousand parameters with `transformers`, gives it random weights large enough that
the logits differ clearly between tokens, saves it as a Hugging Face checkpoint (config.json,
tokenizer.json, tokenizer_config.json, safetensors) and writes `reference.json`: the token ids
the `tokenizers` library gives for some strings, and the logits `transformers` computes in
float32 for two prompts at every position.

The checkpoints are committed under tests/fixtures/tiny/; the Rust tests compare against
them. Rerun only to change the set; name checkpoints after the folder to remake only those
(each keeps its seed, so the others stay byte-identical):

    python3 -m venv venv && venv/bin/pip install torch transformers safetensors tokenizers
    venv/bin/python scripts/reference/make_tiny_checkpoints.py tests/fixtures/tiny [qwen3 ...]
"""

import io
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
import sentencepiece
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = """Symphony runs open-weight language models on your own machine. It serves them over
HTTP, answers from your documents, runs agents and fine-tunes models. The quick brown fox
jumps over the lazy dog; 1234567890 times! Pack my box with five dozen liquor jugs.
def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n
Les modèles tournent en local. Ça marche très bien. 東京は日本の首都です。"""

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

WORDS = """the of and to in is that it for on with as was by at from this be are or an have
not which but all were when there can more one so if about out up into has than them some time
model models token tokens layer layers weight weights expert experts local machine run runs fast
quickly slowly document documents answer answers question agent agents tool tools memory server
request requests batch cache prefix attention window sliding global rotary embedding vocabulary
Paris London Tokyo Berlin Rome 2024 3.14 42 1000 def return if else for while print self None
café naïve über straße東京 日本 ŋ emoji 🎵""".split()


def synthetic_corpus(n_lines: int) -> list[str]:
    """Sentences of the words above, from a fixed seed: enough repetition for BPE merges."""
    rng = random.Random(1234)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
        sep = rng.choice([" ", " ", " ", "  ", ", ", "\n"])
        lines.append(sep.join(words) + rng.choice([".", "!", "?", "", ":"]))
    return lines

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TOKENIZER_PROBES = [
    "<s>Hello</s> world",
    "the model runs  fast\n\nanswers",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing  ",
    "numbers 1234567 and 3.14159",
    "def f(x):\n\treturn x * 2\n",
    "Ça marche très bien, 東京",
    "<|im_start|>user\nhi<|im_end|>",
    "emoji 🎵 and unseen ŋ characters",
]

PROMPTS = [
    "The quick brown fox jumps over the lazy dog",
    "def fibonacci(n): return n if n < 2 else",
]


def train_sentencepiece(out: Path, dummy_prefix: bool) -> Path:
    """A SentencePiece BPE model with byte fallback, as Llama 2, Mistral, Phi-3 and (without
    the dummy prefix) Gemma ship them."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(synthetic_corpus(3000) + CORPUS.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=640,
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        split_digits=True,
        normalization_rule_name="identity",
        add_dummy_prefix=dummy_prefix,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        minloglevel=2,
    )
    path = out / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def sentencepiece_tokenizer(style: str) -> Tokenizer:
    """The `tokenizer.json` transformers makes from a SentencePiece model (its Llama or
    Gemma converter), with chat markers added as special tokens."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_sentencepiece(tmp, dummy_prefix=(style == "llama"))
        cls = {"llama": "LlamaTokenizer", "gemma": "GemmaTokenizer"}[style]
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "tokenizer_class": cls,
                    "bos_token": "<s>",
                    "eos_token": "</s>",
                    "unk_token": "<unk>",
                    "add_bos_token": True,
                    "legacy": False,
                }
            )
        )
        hf = transformers.AutoTokenizer.from_pretrained(tmp)
        hf.save_pretrained(tmp / "out")
        tok = Tokenizer.from_file(str(tmp / "out" / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL[1:]])
    return tok


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_corpus(3000) + [CORPUS], trainer)
    return tok


COMMON = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    tie_word_embeddings=False,
)

# Which tokenizer each checkpoint gets: byte-level BPE (GPT-2 style) or SentencePiece as
# converted for Llama (dummy prefix) or Gemma (none).
TOKENIZERS = {"mistral": "llama", "phi3": "llama", "gemma3": "gemma"}

# name -> (config class, overrides, dtype saved, shard size or None)
MODELS = {
    "llama": ("LlamaConfig", dict(rope_theta=10000.0), torch.bfloat16, "150KB"),
    "mistral": ("MistralConfig", dict(sliding_window=4, rope_theta=10000.0), torch.float32, None),
    "qwen2": ("Qwen2Config", dict(rope_theta=1000000.0, tie_word_embeddings=True), torch.float16, None),
    "phi3": ("Phi3Config", dict(rope_theta=10000.0, pad_token_id=None), torch.float32, None),
    "gemma3": (
        "Gemma3TextConfig",
        dict(
            num_hidden_layers=3,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_theta=1000000.0,
            rope_local_base_freq=10000.0,
            final_logit_softcapping=30.0,
            tie_word_embeddings=True,
            rms_norm_eps=1e-6,
            pad_token_id=None,
        ),
        torch.float32,
        None,
    ),
    "mixtral": (
        "MixtralConfig",
        dict(num_local_experts=4, num_experts_per_tok=2, rope_theta=1000000.0),
        torch.float32,
        None,
    ),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        dict(
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=64,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            rope_theta=1000000.0,
        ),
        torch.float32,
        None,
    ),
    # Per-head RMSNorm of queries and keys, no Q/K/V biases, and a head size (32) that is not
    # hidden_size / num_attention_heads (16), as in the released Qwen3 models.
    "qwen3": (
        "Qwen3Config",
        dict(head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6),
        torch.bfloat16,
        None,
    ),
}


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights with std 1/sqrt(fan-in) (norms around 1), so activations keep their scale and
    the logits spread over several units instead of sitting near zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                centre = 0.0 if "gemma" in type(model).__name__.lower() and "norm" in name else 1.0
                p.copy_(centre + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        if hasattr(model, "lm_head") and not model.config.tie_word_embeddings:
            model.lm_head.weight.mul_(4.0)


def main(out_root: Path, only: list[str]) -> None:
    unknown = set(only) - MODELS.keys()
    if unknown:
        sys.exit(f"unknown checkpoints {sorted(unknown)}: expected some of {list(MODELS)}")
    tokenizers = {
        "bpe": train_tokenizer(),
        "llama": sentencepiece_tokenizer("llama"),
        "gemma": sentencepiece_tokenizer("gemma"),
    }
    # A checkpoint's seed is its place in MODELS: add new ones at the end.
    for seed, (name, (cls_name, overrides, dtype, shard)) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        out = out_root / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        style = TOKENIZERS.get(name, "bpe")
        tok = tokenizers[style]
        specials = (
            dict(bos_token_id=1, eos_token_id=2, vocab_size=tok.get_vocab_size())
            if style != "bpe"
            else {}
        )
        cfg = getattr(transformers, cls_name)(**{**COMMON, **overrides, **specials})
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        randomise(model, seed)
        model = model.to(dtype)
        kwargs = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(out, **kwargs)
        tok.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "bos_token": None if style == "bpe" else "<s>",
                    "eos_token": "<|im_end|>",
                    "chat_template": CHATML,
                    "add_bos_token": style != "bpe",
                },
                indent=2,
            )
        )
        # The reference runs the saved weights, upcast, in float32.
        ref_model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
        ref_model.eval()
        reference = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "dtype": str(dtype).removeprefix("torch."),
            "tokenizer": [
                {"text": t, "ids": tok.encode(t).ids}
                for t in TOKENIZER_PROBES + random.Random(99).sample(synthetic_corpus(3000), 40)
            ],
            "prompts": [],
        }
        for text in PROMPTS:
            ids = tok.encode(text).ids
            with torch.no_grad():
                logits = ref_model(torch.tensor([ids])).logits[0]
            reference["prompts"].append(
                {
                    "text": text,
                    "ids": ids,
                    "logits": [[round(float(v), 5) for v in row] for row in logits],
                }
            )
        (out / "reference.json").write_text(json.dumps(reference))
        files = sorted(p.name for p in out.iterdir())
        size = sum(p.stat().st_size for p in out.iterdir())
        print(f"{name}: {size / 1e6:.2f} MB {files}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tiny"), sys.argv[2:])
