"""Real NVP Explorer: `streamlit run streamlit_app.py`."""
import streamlit as st

from ui.sidebar import model_picker

# The pages live in app_pages/, not pages/: Streamlit would run a pages/ folder's scripts on their own
# (legacy multipage) when a page URL is opened directly, without this file's navigation and model picker.
st.set_page_config(page_title="Real NVP Explorer", page_icon=":material/cyclone:", layout="wide")
page = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/lesson.py", title="Lesson", icon=":material/school:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/fitness_center:"),
    st.Page("app_pages/explorer.py", title="Layer Explorer", icon=":material/biotech:"),
    st.Page("app_pages/latent.py", title="Latent Playground", icon=":material/explore:"),
    st.Page("app_pages/lab.py", title="Likelihood lab", icon=":material/science:"),
    st.Page("app_pages/compare.py", title="Compare models", icon=":material/compare:"),
])
model_picker()
page.run()
