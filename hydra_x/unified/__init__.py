"""The unified model: one LLM over interleaved text and visual tokens (understanding and generation)."""
