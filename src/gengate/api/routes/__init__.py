"""Thin routes: parse → service → render."""
