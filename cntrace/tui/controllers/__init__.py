"""One controller per tab (containers, topology, path, drops) and the snapshot feed behind them."""
