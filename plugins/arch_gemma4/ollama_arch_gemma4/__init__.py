"""Gemma 4 for ollama-core: HF -> GGUF conversion, tokenizer, chat renderer and output parser."""
