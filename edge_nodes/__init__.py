"""An edge site: its Redis cache, its local model and its Flower ClientApp."""
