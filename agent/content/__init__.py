"""Content: a content-addressed store on disk, visible per namespace through the metadata
database, with resumable ingests."""
