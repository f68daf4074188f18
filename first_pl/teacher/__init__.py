"""The teacher's knowledge: extract its top-k distributions once into the HDF5 store
(``extract``), choose the trustworthy transform of them on validation (``transforms``; the grid
search ``parameter_search``, the chosen value ``parameter_choice``, on a store
``choose_on_store``), and analyse what top-k keeps and how calibrated each rank is
(``analysis``, the paper's figures 2 and 3)."""
