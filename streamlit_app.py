"""Real NVP Explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

from ui.sidebar import model_picker

st.set_page_config(page_title="Real NVP Explorer", page_icon="🌀", layout="wide")
page = st.navigation([
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/explorer.py", title="Layer Explorer", icon="🔬"),
    st.Page("pages/latent.py", title="Latent Playground", icon="🧭"),
])
model_picker()
page.run()
