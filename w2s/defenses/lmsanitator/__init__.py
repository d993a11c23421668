"""LMSanitator (arXiv 2308.13904; meng-wenlong/LMSanitator): attack-vector mining, monitoring and purging."""
