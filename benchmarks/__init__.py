"""Side-by-side benchmarks against scikit-learn, SPAMS and SPORCO (the `bench` extra)."""
