"""Garbage collection of content that no image, lease or label keeps."""
