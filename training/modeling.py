"""Base model and tokenizer: the preset's Hub checkpoint, a local folder, or the tiny T5 built from a config."""

from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedTokenizerFast, T5Config

from contract.files import save_folder_atomically
from training.config import TINY_T5, TINY_VOCAB_SIZE, TrainConfig

TINY_BASE_DIR = "base/model"  # inside the run folder: the tiny base is saved so every later step loads the same


def train_sample_tokenizer(texts: list[str], vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A T5-style (SentencePiece Unigram) tokenizer trained on `texts`: pad=0, eos=1, unk=2 as in FLAN-T5."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_tiny_base(cfg: TrainConfig, run_dir: Path, texts: list[str], dialogues: list[str]) -> Path:
    """Create (once) the tiny preset's T5 from a config, copy-pretrained on `dialogues` for
    cfg.tiny_pretrain_steps steps, with its tokenizer, under run_dir/base/model."""
    folder = run_dir / TINY_BASE_DIR
    if folder.exists():  # saved atomically below: if it exists, it is complete
        return folder
    tokenizer = (AutoTokenizer.from_pretrained(cfg.tokenizer) if cfg.tokenizer
                 else train_sample_tokenizer(texts))
    config = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                      **TINY_T5)
    torch.manual_seed(cfg.seed)
    model = AutoModelForSeq2SeqLM.from_config(config)
    if cfg.tiny_pretrain_steps:
        from training.tiny_pretrain import pretrain_copy

        print(f"tiny base: copy pre-training, {cfg.tiny_pretrain_steps} steps", flush=True)
        losses = pretrain_copy(model, tokenizer, dialogues, cfg.tiny_pretrain_steps, cfg.seed)
        print(
            f"tiny base: {cfg.tiny_pretrain_steps} copy pre-training steps, loss {losses[0]:.2f} -> {losses[-1]:.2f}"
        )

    def save(tmp):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    save_folder_atomically(folder, save)  # a kill mid-save leaves no half base (weights without tokenizer)
    return folder


def base_model_path(cfg: TrainConfig, run_dir: Path) -> str:
    return cfg.base_model or str(run_dir / TINY_BASE_DIR)


def load_tokenizer(cfg: TrainConfig, run_dir: Path):
    if cfg.base_model is None:  # tiny: the tokenizer saved with the built base (it may be the real one)
        return AutoTokenizer.from_pretrained(base_model_path(cfg, run_dir))
    return AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.base_model)


def load_base_model(cfg: TrainConfig, run_dir: Path, quantization_config=None):
    path = base_model_path(cfg, run_dir)
    try:
        if quantization_config is not None:  # QLoRA: 4-bit weights on the GPU, bf16 compute
            return AutoModelForSeq2SeqLM.from_pretrained(path, quantization_config=quantization_config,
                                                         dtype=torch.bfloat16, device_map={"": 0})
        return AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float32)
    except OSError as e:
        raise OSError(f"could not load the base model '{path}' ({e}). Offline, use --preset tiny or "
                      "--base_model PATH to a local checkpoint.") from e


def untie_lm_head(model):
    """Give the model its own lm_head, as the real FLAN-T5 checkpoints have (transformers 5 ties it when a T5 is
    built from a config, hiding 24.7 M parameters of flan-t5-base): counts and measurements see the real size."""
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    return model


def count_parameters(model) -> dict:
    """Counts from the model object actually trained (shared tensors counted once, as parameters() does)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_percent": 100.0 * trainable / total}

