"""streamfer's bottom layer: what every package (engines, models, streams, pipeline) shares."""
