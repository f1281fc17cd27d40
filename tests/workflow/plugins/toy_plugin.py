"""A plugin as a user would write one: one method entry and one backbone entry, named in
GSMORPH_PLUGINS=toy_plugin (its trainer and network live in toy_trainer.py, imported only
when they are used)."""
from gsmorph import backbones, methods

methods.register(methods.Method("toy", "trained", "Toy-{backbone}", "#17becf", "p", "toy_trainer:ToyTrainer"))
backbones.register(backbones.Backbone("tinynet", "TinyNet", "toy_trainer:TinyNet"))
