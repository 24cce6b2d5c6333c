"""Training: the classification LightningModule, checkpoint loading and training callbacks."""
