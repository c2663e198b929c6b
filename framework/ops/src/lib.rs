//! The hot tensor operations of the DARTS-family spaces (depthwise/dilated conv, pooling, batch norm, mixed-op sum) as candle custom ops with forward and backward.
