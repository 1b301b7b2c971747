"""The BioMedVR method: VR modules, text banks, k-nearest scoring, experts, gates, losses."""
