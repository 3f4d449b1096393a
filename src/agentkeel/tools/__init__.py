"""Tools: typed functions with a contract, and the validation of the model's calls to them."""
