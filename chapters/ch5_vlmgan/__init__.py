"""Chapter 5 — VLMGAN (Cheng et al., 2022): vision-language matching as a plug-in for AttnGAN and DF-GAN."""
