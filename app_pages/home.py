"""Home: what Real NVP is, in three formulas, and where each page takes you."""
import streamlit as st

from app import jobs

st.title(":material/cyclone: Real NVP Explorer")
st.markdown("A **normalizing flow** learns an invertible map $f$ that turns data $x$ (here MNIST digits, 2-D "
            "points, or a data set of your own) into a latent $z = f(x)$ with a simple density, a standard "
            "Gaussian. *Real NVP* (Dinh, Sohl-Dickstein and Bengio, "
            "[Density estimation using Real NVP](https://arxiv.org/abs/1605.08803), 2016) builds $f$ from layers "
            "that are easy to invert and whose Jacobian determinant is cheap.")

st.subheader("Pages")
st.page_link("app_pages/lesson.py", label="**Start here: the Lesson**", icon=":material/school:")
st.caption("Real NVP in eight steps, from the change of variables to sampling, each with a live view of a trained "
           "model and a question to answer before the reveal.")
PAGES = (  # (page, label, icon, what it does)
    ("app_pages/train.py", "Train", ":material/fitness_center:",
     "Launch a training run in the background and watch its likelihood curve and samples live."),
    ("app_pages/explorer.py", "Layer Explorer", ":material/biotech:",
     "Step through the blocks of a trained flow and watch a digit turn into Gaussian noise and back."),
    ("app_pages/latent.py", "Latent Playground", ":material/explore:",
     "Walk the latent space: interpolate between digits, change the temperature, sample."),
    ("app_pages/lab.py", "Likelihood lab", ":material/science:",
     "Score inputs that are not digits, and sample by temperature beside the test digits."),
    ("app_pages/compare.py", "Compare models", ":material/compare:",
     "Run one digit through two models side by side."),
)
ROW = 3  # links a row: five side by side cut their labels at 1024x768
for start in range(0, len(PAGES), ROW):
    for column, (target, label, icon, what) in zip(st.columns(ROW), PAGES[start:start + ROW]):
        with column:
            st.page_link(target, label=f"**{label}**", icon=icon)
            st.caption(what)

st.subheader("1. Change of variables")
st.markdown("Because $f$ is invertible, the density of $x$ is exact (paper Sec. 3.1):")
st.latex(r"\log p_X(x) = \log p_Z\big(f(x)\big) + \log\left|\det \frac{\partial f(x)}{\partial x}\right|")
st.markdown("Training maximises this log-likelihood. Sampling runs the flow backwards: draw "
            r"$z \sim \mathcal N(0, I)$ and compute $x = f^{-1}(z)$.")

st.subheader("2. The affine coupling layer")
st.markdown("Split the $D$ inputs with a binary mask into $x_{1:d}$, which pass unchanged, and $x_{d+1:D}$, "
            "which are scaled and shifted by functions of the first part (paper Sec. 3.2; with masks, Sec. 3.4):")
st.latex(r"y_{1:d} = x_{1:d}, \qquad y_{d+1:D} = x_{d+1:D} \odot \exp\big(s(x_{1:d})\big) + t(x_{1:d})")
st.markdown("Its inverse needs no inverse of $s$ or $t$, so they can be any neural networks (here MLPs or ResNets):")
st.latex(r"x_{d+1:D} = \big(y_{d+1:D} - t(y_{1:d})\big) \odot \exp\big(-s(y_{1:d})\big)")

st.subheader("3. Why the Jacobian is triangular")
st.markdown(r"$y_{1:d}$ does not depend on $x_{d+1:D}$, and each $y_j$ of the second part depends on "
            r"$x_{d+1:D}$ only through $x_j$, so the Jacobian is block lower-triangular (paper Sec. 3.3):")
# two lines: on one, the formula is wider than the page on a 1024-pixel projector
st.latex(r"\begin{aligned} \frac{\partial y}{\partial x} &= \begin{bmatrix} I_d & 0 \\ "
         r"\dfrac{\partial y_{d+1:D}}{\partial x_{1:d}^{T}} & \operatorname{diag}\big(\exp s(x_{1:d})\big)"
         r"\end{bmatrix} \\ \Rightarrow\quad \log\left|\det \frac{\partial y}{\partial x}\right| &= "
         r"\sum_j s(x_{1:d})_j \end{aligned}")
st.markdown("The determinant is the product of the diagonal: no $D \\times D$ determinant is ever computed. "
            "Stacking couplings with alternating masks (checkerboard, then channel-wise after a *squeeze*) lets "
            "every dimension be transformed, and the multi-scale model factors out half of the dimensions at each "
            "scale. Scores are reported in **bits/dim**: $-\\log_2 p(x) / D$ on the 0–255 pixel scale.")

training = [r for r in jobs.list_runs() if r.active]
if training:
    st.info(f"Training now: **{', '.join(r.name for r in training)}**. Follow it on the Train page.",
            icon=":material/play_circle:")
st.caption("Pick the model every page uses in the sidebar: the shipped checkpoints, and the latest checkpoint "
           "of every run.")
