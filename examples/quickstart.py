"""kiln quickstart: define a Keras-style model, compile it to native code, run it,
check it against a plain numpy forward pass, and look at the IR the compiler made."""
import numpy as np

import kiln

kiln.utils.set_random_seed(0)
model = kiln.Sequential([
    kiln.Input(shape=(784,)),
    kiln.layers.Dense(512, activation="relu"),
    kiln.layers.Dense(512, activation="relu"),
    kiln.layers.Dense(10, activation="softmax"),
])
model.summary()

exe = kiln.compile(model)                      # IR -> passes -> LLVM -> native code
x = np.random.default_rng(0).random((37, 784), dtype=np.float32)
y = exe(x)                                     # one native call; any batch size works

# the same forward pass written with numpy over the model's weights
w1, b1, w2, b2, w3, b3 = model.get_weights()
h = np.maximum(x @ w1 + b1, 0)
h = np.maximum(h @ w2 + b2, 0)
z = h @ w3 + b3
ref = np.exp(z - z.max(axis=1, keepdims=True))
ref /= ref.sum(axis=1, keepdims=True)
for n in (37, 1, 5):
    np.testing.assert_allclose(exe(x[:n]), ref[:n], rtol=1e-5, atol=1e-7)
print(f"\ncompiled output matches numpy for batch sizes 37, 1 and 5 "
      f"(max abs diff {np.abs(y - ref).max():.2e})")
print("predicted classes of the first 8 rows:", model.predict(x[:8], verbose=0).argmax(axis=1))

print("\nThe IR kiln compiled (kiln.lower(model), after its passes):\n")
print(exe.ir)
