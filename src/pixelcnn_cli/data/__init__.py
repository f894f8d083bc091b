"""Built-in dataset plugins and the quantisation the host applies to every dataset."""
