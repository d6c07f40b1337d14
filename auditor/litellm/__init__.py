"""What LiteLLM does, pure: durations, budget entries, the proxy config, model resolution, periods, counter keys, eras."""
