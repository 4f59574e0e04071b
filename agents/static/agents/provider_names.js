// Agent change form: suggest the model (or voice) names of the provider selected (agents/forms.py).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-names-from]")) {
    const provider = document.getElementById(input.dataset.namesFrom);
    if (!provider) continue;
    const follow = () => {
      const list = document.getElementById(`${input.id}-names-${provider.value}`);
      if (list) input.setAttribute("list", list.id);
      else input.removeAttribute("list");  // this provider takes any name
    };
    provider.addEventListener("change", follow);
    follow();
  }
});
