//! Object-safe optimizers (SGD, Adam, AdamW, RMSprop), learning-rate schedules and gradient clipping over flat f32 buffers.
