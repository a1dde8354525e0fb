"""ModernBERT embedding models for ollama-core: conversion, tokenizer metadata, reference and verification."""
