"""Customer lifetime value: BG/NBD for how many purchases, Gamma-Gamma for how much each.

bgnbd.py and gamma_gamma.py are the models (numpy/scipy only, no database); service.py reads
the purchase history, fits both, writes the predictions to `features.clv_*` and the fit to
`clv_models`."""
