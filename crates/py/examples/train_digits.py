# FF on the embedded 8x8 digits from Python: train, then test (no downloads).
import ffwd

config = ffwd.RunConfig()  # the `ffwd train` default: a 3x400 FF MLP, 60 epochs
run = ffwd.train(config)
x_train, y_train, x_test, y_test, classes = ffwd.datasets.load("digits")
accuracy = (run.model.predict(x_test) == y_test).mean()
print(f"test accuracy {100 * accuracy:.2f}% ({run.model.kind}, {run.model.backend})")
print(f"metrics and checkpoint in {run.out_dir}/")
