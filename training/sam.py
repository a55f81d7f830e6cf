"""Sharpness-aware minimisation (SAM; Foret et al., ICLR 2021) as a Keras model wrapper.

Each step first climbs from the weights w to w + rho * g / |g| (g: the batch's gradient), the
worst nearby point to first order, and then applies the gradient taken there at w itself: the
network is pushed to a region where the loss stays low when the weights move, which is reported to
carry better to data unlike the training data (for face anti-spoofing across databases: GAC-FAS,
Le and Woo, CVPR 2024). Training only: the wrapped model is what is exported. Two forward and
backward passes a step, so training takes about twice as long; batch-norm statistics are updated by
both passes (as in the reference implementations that run the model twice). TensorFlow backend.
"""
from __future__ import annotations

import keras


class SharpnessAwareModel(keras.Model):
    """`inner`, trained with sharpness-aware steps of radius `rho` (its own variables, frozen layers stay frozen)."""

    def __init__(self, inner: keras.Model, rho: float, **kwargs):
        super().__init__(**kwargs)
        if rho <= 0:
            raise ValueError(f"SharpnessAwareModel: rho must be above 0 (got {rho})")
        self.inner, self.rho = inner, float(rho)

    def call(self, x, training=None):
        return self.inner(x, training=training)

    def train_step(self, data):
        import tensorflow as tf

        # _compute_loss and _loss_tracker are what Keras 3's own TensorFlow train_step uses (keras pinned 3.15)
        x, y = data[0], data[1]
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        gradients = tape.gradient(loss, variables)
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])  # reported at w, as plain steps report it
        scale = self.rho / (tf.linalg.global_norm([g for g in gradients if g is not None]) + 1e-12)
        steps = [tf.zeros_like(v) if g is None else g * scale for v, g in zip(variables, gradients)]
        for variable, step in zip(variables, steps):
            variable.assign_add(step)
        with tf.GradientTape() as tape:
            climbed = self._compute_loss(x=x, y=y, y_pred=self(x, training=True), training=True)
        gradients = tape.gradient(climbed, variables)
        for variable, step in zip(variables, steps):
            variable.assign_sub(step)  # back to w; the update uses the gradient from the climbed point
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self.compute_metrics(x, y, y_pred)
