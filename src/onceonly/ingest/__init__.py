"""Ingest: one pipeline from raw rows to the store — decode → map → coerce → validate → upsert."""
