"""Fit y = w·x + b by gradient descent through the Python API (the same as `skyline example linreg`)."""

from skyline.training.linreg import LinRegConfig, fit_linreg

if __name__ == "__main__":
    result = fit_linreg(LinRegConfig(x=(1.0, 2.0, 3.0), y=(2.0, 4.0, 6.0), lr=0.1, steps=100))
    print(f"w = {result.w:.6f}, b = {result.b:.6f}, loss = {result.loss:.3g}")
