"""`edgeskin explain`: Grad-CAM family heatmaps (pytorch-grad-cam) and how well they localise."""
